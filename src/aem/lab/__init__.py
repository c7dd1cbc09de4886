"""``aem lab``: the paper's mechanism tested with statistical power on small exact policies.

Multi-turn tasks whose responses are a few tokens (:mod:`aem.lab.tasks`), tabular and log-linear
autoregressive policies with exact token and response entropies (:mod:`aem.lab.policies`),
natural-gradient / policy-gradient / Adam / PPO updates (:mod:`aem.lab.updates`), GRPO, AEM,
Analysis A masks and EMPG (:mod:`aem.lab.arms`), hundreds of seeds per arm in one tensor
(:mod:`aem.lab.experiment`), the same-batch entropy drift (:mod:`aem.lab.drift`) and the report
(:mod:`aem.lab.report`). Depends on :mod:`aem.algorithms` and torch (matplotlib for figures).
"""
