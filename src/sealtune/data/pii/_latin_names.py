"""Vocabulary for Latin-script names: given names, surnames, surname endings, non-names.

Lists, not a model: about 700 given names and 400 surnames common in Europe
and the Americas (looked up without diacritics and case-folded), the endings
that mark a surname in many European languages (``-sson``, ``-ović``,
``-ová``, ``-ski`` ...), and the capitalised words that are never taken for a
name (sentence starters, months, places that are also given names need a cue).

What this gives :mod:`._person_en`: evidence that a capitalised (or, after a
cue, lower-case) word is a name. It is evidence only: a list of names is
never complete, and a surname ending also ends some place names (``Moldova``).
"""

from __future__ import annotations

import re


def words(text: str) -> frozenset[str]:
    return frozenset(text.lower().split())


GIVEN = words("""
aaron abigail adam adela adrian adriana agnes agnieszka ahmed aida aisha alan albert alberto
alejandro aleksander aleksandra alessandro alessia alex alexander alexandra alexandre
alexis alfred alfredo ali alice alicia alina alma amanda amber amelia amit ana anastasia andre
andrea andreas andrei andrej andrew andrzej angel angela angelika angelo anita ann anna annika
anne anneli annette anton antonia antonio ariana arjun arne arthur astrid aurelie aurelio austin
axel barbara bart bartosz beatrice beatriz becky ben benedikt benjamin benoit bernard bernd
berta bettina betty bianca birgit bjorn bo bogdan boris brad brandon brenda brian bridget
brigitte bruno bryan camille carina carl carla carlo carlos carmen carol carolina caroline
carolyn catalina caterina catherine cecilia celine cesar charles charlie charlotte chiara chloe
chris christian christina christine christoph christophe christopher cindy claire clara claude
claudia claudio colin connor constance cormac cristina cynthia dagmar dale damian dan daniel
daniela daniele danielle dario david dawid debora deborah debra deepak denis denise dennis
diana diane diego dieter dimitri dimitris dmitri dmitry dominik dominika dominique donald donna
doris dorothy douglas dylan edgar edith edoardo eduardo edward eero egon eileen ekaterina
elena eleni elias elijah elin elisa elisabeth elise eliza elizabeth ella elle ellen elliott eloise
elsa emil emilia emilie emily emma emmanuel enrico enrique enzo erik erika ernesto ernst
esther ethan eugene eva evelyn fabian fabio fabrizio farah fatima federico felicia felipe felix
fernando fiammetta filip filippo fiona florian francesca francesco francis francisco franz
freja frida frederik fredrik friedrich gabriel gabriela gabriele gabrielle gareth gary georg
george georgios gerald gerhard gert gilles gina giorgio giovanni giulia giuseppe gloria
gonzalo gordon greta gregory gregor gunnar gustav gustavo hakon hana hannah hannes hans harald
harold harriet harry hector heidi heinz helen helena helga helmut henri henrik henry herbert
hermann hilda hiroshi holger hugo ian ida ignacio igor ilse ines inga inge ingrid irene irina
isabel isabella isabelle ivan ivana jacek jacob jacqueline jacques jakob jakub james jan jana
janet janice janina janne jaroslav jaroslava jason javier jean jeanne jeffrey jelena jennifer
jenny jens jeremy jerome jerzy jesper jesse jessica jesus joachim joan joana joanna jodi joe
joel johan johann johanna johannes john jon jonas jonathan jordi jorge jose josef josefine
joseph josephine joshua juan judith judy julia julian juliana julie julien julieta julius
jurgen justin jutta kai karen karin karina karl karolina kasper katarina katarzyna kate
katharina katherine kathleen kathryn katie katja katrin katrine kayla keith kelly kenneth kevin
kim kira kirsten klaus konrad kristian kristina kristin krzysztof kurt lara lars laura lauren
laurent lea leif lena leon leonardo leonie liam lidia lina linda lisa liv lorenzo lotte
louis louise luca lucas lucia luciano lucie ludwig luigi luis luisa lukas lukasz luke lydia
madeleine magda magdalena magnus maja malin manuel manuela marc marcel marcin marco marcus
margaret margarita margit maria mariana marie marina mario marion mark marko marta martha martin
martina mary mateo mathias mathilde matilda matteo matthew matthias mattias maurice mauro maxim
maximilian megan melanie melissa mette michael michaela michal michel michele michelle miguel
mika mikael mikhail mikkel milan milena miriam mohammed monica monika morten nadia nadine
naomi natalia natalie natasha nathalie nathan nicholas nicola nicolas nicole niklas nikola
nikolai nikolaos nils nina noah noemi nora norbert odette olaf oleg olga oliver olivia
omar oscar oskar otto pablo pamela paola paolo pascal patricia patrick paul paula pauline paulo
pavel pawel pedro per peter petra philip philipp philippe pia piero pierre pietro piotr
priscilla rachel rafael rafal rainer ralf ralph ramon raphael raquel raul rebecca regina
reinhard renata renate rene ricardo riccardo richard rita robert roberta roberto robin roger
roland rolf roman ronald rosa rosalie rose ruben rudolf rui ruth ryan sabine sabrina salvatore
samantha samuel sandra sara sarah sebastian sergei sergio shirley silvana silvia simon
simona simone siri sofia sofie sonia sophia sophie stefan stefania stefano steffen stella
stephan stephanie stephen steven susan susanne sven svetlana sylvia sylvie tamara tanja tatiana
teresa terence terrence theodore theresa thierry thomas thorsten tim timo tina tobias
tom tomas tomasz toni tony torsten ulla ulrich ulrike ursula uta valentina valentin
valeria valerie vanessa vera veronica veronika victor viktor viktoria vincent vincenzo viola
virginie vitor vivian vladimir walter werner wiebke wilhelm willem william wolfgang xavier
yannick yuki yulia yves zofia zoe zoltan zsofia zuzana
abby adelaide agata agostino ainhoa aino aleksi alvaro amalia amelie ana ander anett anja annika
antti aurora ayla barbora beata benedetta bertram birte blanka boris bronislava
caitlin camila carmela csaba dagny dalia damiano daniela darja darren denisa
devin dominika dusan edvard eeva eino eija eliska elvira emilio erna esko eszter
ewelina fiammetta filippa flavio fletcher folke franziska fredrik gabor gaspar gerardo
giacomo gianluca gianni gudrun gunhild gustaf gyula hakan halina hannele
harvey hedvig heikki helmi henrietta hjalmar ilkka ilona irena iris isak
ivo jaana jadwiga jalmari janka jarmila jaroslav jenni jiri joakim jorma jozef juha
jukka juuso kaarina kaisa kalle karel katalin katri kerstin kirsi klara
kristof kseniya lajos laszlo leena leopold liisa lilja lina liudmila
lorenza lotta lucja ludmila luiza maarit mads magnhild marcela margit marisa
marit marja marjo markku marketa marton matti merja milos miroslav mirja
moira monja natalija nils noemi nuria oddvar olli ondrej orsolya ottilia outi paavo pasi
pekka pentti petr pirjo radek radoslaw raimo reijo riikka risto roxanne rozalia ruut
sakari sampo sanna santeri saskia satu seppo sigrid silje simo sini sirpa sivert
slawomir snorre soren stanislav stig sune susanna svea tapio tarja teemu terhi teuvo
timo toivo tove ulla unni urho vaclav valtteri veikko venla vera viivi vilma
vitezslav vlasta vojtech yrjo zbigniew zdenek zdenka zita zlata zsuzsanna
""")

SURNAMES = words("""
adams allen almeida alvarez anderson andersen bailey baker barnes becker bell bennett bernard
berger bianchi bjork blanc bonnet brown bruno burke butler campbell carter castro clark clarke
colombo collins cook cooper costa cruz davies davis diaz dubois dupont durand edwards evans
fernandes fernandez ferrari ferreira fischer fisher fontaine ford foster fournier fox garcia
garnier gomes gomez gonzalez gonzales graham gray green greene griffin hall hansen harris
hartmann hoffmann hughes hunt jackson james janssen jansen jenkins johnson jones kaiser keller
kelly king klein koch kowalski kozlov kruger lambert lang lange larsen laurent lee lefebvre
lehmann leroy lewis lombardi lopez lorenz martin martinez mayer meier meyer miller mitchell
moore morales moreau moreno morgan morris muller murphy nelson nguyen novak oliveira olsen
parker pereira perez perry peters petit phillips powell price ricci richter rivera roberts
robinson rodriguez rodrigues rogers romano rossi roux russo sanchez santos schmidt schmitt
schneider schubert schulz schwarz scott silva simon smith stewart sullivan taylor thomas
thompson torres turner vasquez vogel wagner walker ward watson weber white williams wilson
wolf wood wright young zimmermann becker bauer berg dahl eklund holm lund nilsen nielsen
jensen pedersen christensen rasmussen sorensen kristensen hernandez ramirez flores ortiz
gutierrez ruiz jimenez navarro dominguez vazquez ramos gil serrano blanco molina suarez
ortega delgado castillo vargas romero herrera medina aguilar rojas mendoza guerrero ferrara
esposito galli conti greco marino giordano rinaldi gallo barbieri fontana moretti caruso
mancini leone martini sala villa rizzo de luca novakova horvath kovacs nagy szabo toth varga
kiss molnar nemeth farkas balogh papp lakatos takacs juhasz fazekas virtanen korhonen
nieminen makinen hamalainen laine heikkinen koskinen jarvinen lehtonen dale hodge barrett
pearson salinas garnier nolan marshall ryan miles
azevedo
""")

# Endings that mark a surname in Nordic, Slavic, Baltic, Romanian, Greek,
# Armenian and Georgian names; the word must also be long enough.
SURNAME_ENDING = re.compile(
    r"(?:sson|ssen|sdottir|dottir|ovic|evic|ović|ević|ovich|evich|ová|ská|cká|ski|ska|sky|"
    r"cki|cka|wicz|czyk|enko|escu|eanu|poulos|opoulos|akis|idis|ian|yan|shvili|adze|"
    r"ov|ev|ova|eva|ina|kin|sen|son|mann|berg|stein|ini|elli|etti|ucci|azzi)$"
)

#: Capitalised words that are given names too but first of all words or
#: places: taken as a name only with a title, a cue, or a surname beside them.
AMBIGUOUS = words("""
may june april august will grace hope faith joy frank mark bill rose lily summer amber ruby jack
max art guy rich don sue pat chase dean drew glen hunter miles bob sandy dawn holly iris ivy page
penny carol leo victoria virginia georgia jordan austin charlotte florence sydney paris madison
lincoln washington jackson troy per bo kai tim key white young king green brown long bell ford
gray hall wood fox wolf price hunt lang gil sala villa dale
""")

# Words of firms, bands and addresses that follow names ("Jones and Sons",
# "Eriksson Bridge", "Jennifer Alcaraz Suite 541").
_LABELS = """
sons brothers orchestra associates group partners holdings stripes producer director president
awarded street st avenue ave road rd boulevard blvd lane ln drive court ct way place pl terrace
parkway circle highway square plaza trail crescent close row bridge hills parks rapids islands
extensions mall gateway bypass flat flats cliffs via rue suite apt apartment unit floor box
"""
#: Words that end a name when they follow it.
TRAILING = words(_LABELS)

#: Capitalised words never taken for a name (sentence starters, labels, months ...).
NOT_NAMES = words("""
the a an and or but if then so we i you he she it they my your our his her their this that these
those there here what when where why who how which yes no not hi hello hey dear thanks thank
please sorry okay ok well oh also just still yet now today tomorrow yesterday monday tuesday
wednesday thursday friday saturday sunday january february march april may june july august
september october november december city state country address phone email mobile tel fax card
account name number customer client user team support service office company inc ltd llc corp
bank mr mrs ms miss dr prof sir madam
""" + _LABELS)
