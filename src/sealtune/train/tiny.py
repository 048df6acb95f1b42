"""A tiny causal language model, built locally, for the demo and the tests.

Models cannot be downloaded here, so :func:`make_tiny` writes one: a
Llama-style configuration (hidden size 64, 2 layers, 4 heads), a byte-level
BPE tokenizer trained with ``tokenizers`` on a synthetic Chinese/English
customer-service corpus generated in code (never on user data, and not on the
bundled demo conversations, whose planted PII would otherwise end up in the
vocabulary), a ChatML-style chat template whose assistant turns are wrapped
in ``{% generation %}`` markers (so training can put the loss on assistant
tokens only), and randomly initialised weights in ``model.safetensors``
(never pickle).

The directory loads with ``AutoModelForCausalLM.from_pretrained(DIR)`` and
``AutoTokenizer.from_pretrained(DIR)``. Everything is deterministic: the
corpus and the tokenizer do not depend on the seed, the weights do (same seed,
same bytes).

The model knows nothing: it is random. It is good for exercising the
pipeline, measuring speed, and privacy experiments where memorisation of
planted canaries is the signal; it is not a language model anyone should use.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from sealtune.errors import UsageError

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>")
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

#: Architecture of the tiny model (small enough for one slow CPU core).
TINY_ARCH = {
    "hidden_size": 64,
    "intermediate_size": 176,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 1024,
}
VOCAB_SIZE = 3072
CORPUS_SEED = 20240601  # fixed: the tokenizer is the same for every model seed

# Common simplified Chinese characters (roughly the most frequent ~600), so that
# the byte-level BPE learns one token per character for everyday text.
_HANZI = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家"
    "学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经"
    "头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者"
    "向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气"
    "信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活"
    "难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清"
    "物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功"
    "指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强"
    "步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版"
    "双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志"
    "飞观争究包组造落视济喜离虽坏兴切您账户卡号码密余额转账冻结解挂失申请处理退款订单物流快递"
    "预约挂医生诊药检查报告发票积分套餐话费流量宽带客服投诉建议感谢抱歉稍等核实确认短信验证登录"
)
_ZH_NAMES = ("张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强", "周杰", "吴丽")
_ZH_ASKS = (
    "我的银行卡被冻结了，请帮我处理。",
    "我想查询一下账户余额。",
    "我的订单还没有发货，什么时候能到？",
    "请问怎么修改登录密码？",
    "我要投诉，话费扣多了。",
    "我想预约下周三的门诊。",
    "快递显示已签收，但我没有收到。",
    "信用卡账单有一笔不认识的消费。",
    "宽带一直断线，能派人来检查吗？",
    "积分可以兑换什么礼品？",
)
_ZH_REPLIES = (
    "您好，已为您提交申请，预计24小时内处理完毕，请留意短信通知。",
    "抱歉给您带来不便，我们会尽快核实并回复您。",
    "请您提供订单号，我来帮您查询物流信息。",
    "为了您的账户安全，请不要把验证码告诉任何人。",
    "已为您登记，工作人员会在三个工作日内联系您。",
    "感谢您的耐心等待，问题已经解决。",
)
_EN_ASKS = (
    "My card was charged twice, can you help?",
    "I forgot my password and cannot log in.",
    "When will my order be delivered?",
    "I would like to book an appointment for next Monday.",
    "Why is my phone bill higher this month?",
    "Please cancel my subscription.",
    "The internet at home keeps disconnecting.",
    "How do I redeem my reward points?",
)
_EN_REPLIES = (
    "Sorry about that. I have opened a refund request; you will get an email within 2 days.",
    "Thank you for waiting. Your request has been submitted.",
    "Please share your order number and I will check the delivery status.",
    "For your security, never share verification codes with anyone.",
    "I have booked the appointment and sent a confirmation message.",
    "The issue is fixed now. Is there anything else I can help with?",
)
_EN_TEXT = (
    "the be to of and a in that have it for not on with he as you do at this but his by from "
    "they we say her she or an will my one all would there their what so up out if about who "
    "get which go me when make can like time no just him know take people into year your good "
    "some could them see other than then now look only come its over think also back after use "
    "two how our work first well way even new want because any these give day most us account "
    "card bank balance transfer payment refund order delivery package address phone number "
    "email password login verify code service support customer request ticket problem issue "
    "help please thank sorry hello hi morning afternoon evening today tomorrow week month "
    "doctor hospital appointment clinic medicine report insurance claim policy invoice bill "
    "charge fee credit debit loan interest rate amount total price discount coupon points "
    "internet network signal router plan data minutes message notification app update"
)


def tiny_corpus(*, lines: int = 6000) -> list[str]:
    """The tokenizer's training text: synthetic, mixed Chinese and English, fixed."""
    rng = random.Random(CORPUS_SEED)
    words = _EN_TEXT.split()
    out: list[str] = []
    for i in range(lines):
        kind = i % 5
        if kind == 0:
            out.append(f"你好，我是{rng.choice(_ZH_NAMES)}。{rng.choice(_ZH_ASKS)}")
        elif kind == 1:
            out.append(rng.choice(_ZH_REPLIES) + rng.choice(_ZH_REPLIES))
        elif kind == 2:
            out.append(f"Hi, this is customer {rng.randint(1, 9999)}. {rng.choice(_EN_ASKS)}")
        elif kind == 3:
            out.append(rng.choice(_EN_REPLIES) + " " + " ".join(rng.choices(words, k=12)))
        else:
            chars = "".join(rng.choices(_HANZI, k=24))
            digits = "".join(rng.choices("0123456789", k=rng.randint(4, 18)))
            out.append(f"{chars}，{digits}。{' '.join(rng.choices(words, k=6))}.")
    return out


def _train_tokenizer(vocab_size: int) -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(tiny_corpus(), trainer)
    return tok


def make_tiny(out_dir: Path, *, seed: int = 0, vocab_size: int = VOCAB_SIZE) -> Path:
    """Write a tiny Llama-style causal LM with its tokenizer into ``out_dir``.

    Args:
        out_dir: a directory that does not exist or is empty.
        seed: seeds the weight initialisation (the tokenizer does not depend on it).
        vocab_size: upper bound of the BPE vocabulary (specials and bytes included).

    Returns:
        ``out_dir``.

    Raises:
        UsageError: ``out_dir`` is a file or a non-empty directory.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UsageError(f"{out_dir} exists and is not an empty directory",
                         hint="choose a new directory")
    if vocab_size < 512:
        raise UsageError("vocab_size must be at least 512 (256 bytes + merges + specials)")
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=_train_tokenizer(vocab_size), eos_token="<|im_end|>",  # noqa: S106
        pad_token="<|pad|>", bos_token=None, unk_token=None, model_max_length=1024,  # noqa: S106
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer), tie_word_embeddings=False, bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        **TINY_ARCH,  # type: ignore[arg-type]
    )
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(state)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        model.save_pretrained(out_dir)  # safetensors: transformers 5 writes nothing else
    finally:
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
    meta = {"format": "sealtune-tiny/1", "seed": seed, "vocab_size": len(tokenizer),
            "parameters": sum(p.numel() for p in model.parameters()),
            "note": "randomly initialised; for demos and tests only"}
    (out_dir / "sealtune-tiny.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir
