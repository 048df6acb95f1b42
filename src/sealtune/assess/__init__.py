"""The leakage audit: empirical measures of what a trained model gives away.

:mod:`sealtune.assess.canaries` plants random secrets of a fixed format in a
training set (each included with probability 1/2, repeated a few times);
:mod:`sealtune.assess.exposure` measures, on the trained model, the exposure of
each planted secret (Carlini et al., "The Secret Sharer", 2019), a loss-based
membership-inference AUC between included and left-out canaries, and the
perplexity on held-out clean records (is the model still useful?).

What these measures show: how much the model memorised *these* planted
secrets, a lower bound on what an attacker can extract. What they do not
show: that a model is private. A small exposure gap means these attacks
failed on these canaries, not that no attack succeeds; the proof of privacy
is differential privacy's (ε, δ) guarantee (:mod:`sealtune.train.dp`), and
these measures test that the training code delivers it in practice (and flag
configurations, such as clipping without noise, that do not).

Reports carry numbers and canary ids only, never the secrets.
"""
