"""The smallest training config the end-to-end tests share (seconds per run on one thread)."""

TINY = (
    "model.tiny.vocab_size=320",
    "model.tiny.hidden_size=32",
    "model.tiny.layers=1",
    "model.tiny.heads=2",
    "model.tiny.kv_heads=1",
    "model.tiny.intermediate_size=64",
    "model.tiny.tokenizer_episodes=20",
    "rollout.tasks=2",
    "rollout.group_size=2",
    "rollout.max_response_tokens=8",
    "rollout.max_prompt_tokens=96",
    "env.max_turns=3",
    "warm_start.episodes=8",
    "warm_start.steps=2",
    "warm_start.batch_size=8",
    "trainer.iterations=2",
)
