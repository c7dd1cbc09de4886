"""Build and run a tiny verl ``main_ppo`` job on this CPU: a local Qwen2 model and tokenizer, a
parquet data set in verl's schema and a reward function, all made offline in a folder.

Used by ``test_verl_main_ppo.py``; also runnable by hand::

    PYTHONPATH=src:tests/integrations python -m verl_cpu_run /tmp/run aem_sync
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from aem.integrations.verl.cpu_settings import CPU_ENVIRONMENT, CPU_OVERRIDES
from aem.policy import build_tiny_model, build_tokenizer

REPOSITORY = Path(__file__).resolve().parents[2]
PLUGINS_MODULE = "verl_cpu_plugins"  # tests/integrations/verl_cpu_plugins.py

# ChatML, the template of Qwen2 models: verl's agent loop builds tokens with its Qwen builder for
# model type qwen2, which needs <|im_start|> / <|im_end|> and a one-token newline.
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORDS = ["apple", "mug", "knife", "fridge", "table", "north", "east", "open", "take", "put"]

REWARD_SOURCE = '''
def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """1 if the response mentions the ground-truth word; else a score in [0, 0.5) that varies
    with the response's characters, so that GRPO's groups rarely tie."""
    if ground_truth in solution_str:
        return 1.0
    return (sum(map(ord, solution_str)) % 97) / 194
'''


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def train(self) -> Path:
        return self.root / "train.parquet"

    @property
    def reward(self) -> Path:
        return self.root / "reward.py"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def dumps(self) -> Path:
        return self.root / "batches"


def build_workspace(root: Path, prompts: int = 8, agents: tuple[str, ...] = ()) -> Workspace:
    """Write the model, tokenizer, data set and reward function under ``root``. With ``agents``,
    prompt i names agent loop ``agents[i % len(agents)]`` (verl's ``agent_name`` column)."""
    space = Workspace(root)
    root.mkdir(parents=True, exist_ok=True)
    corpus = [f"user: say {a} then {b}\nassistant: {a} {b}" for a in WORDS for b in WORDS]
    tokenizer = build_tokenizer(corpus, vocab_size=320)
    tokenizer.add_special_tokens({"additional_special_tokens": [IM_START, IM_END]})
    tokenizer.chat_template = CHAT_TEMPLATE
    model = build_tiny_model(
        tokenizer, hidden_size=32, layers=1, heads=2, kv_heads=1, intermediate=64, seed=0
    )
    with torch.no_grad():  # sharper next-token distributions: entropies that differ by turn
        model.get_output_embeddings().weight.mul_(8.0)
    model.generation_config.eos_token_id = [
        tokenizer.convert_tokens_to_ids(IM_END),
        tokenizer.eos_token_id,
    ]
    model.save_pretrained(space.model)
    tokenizer.save_pretrained(space.model)
    rows = []
    for index in range(prompts):
        word = WORDS[index % len(WORDS)]
        rows.append(
            {
                "data_source": "aem_tiny",
                "prompt": [{"role": "user", "content": f"say {word} then {WORDS[-1 - index]}"}],
                "ability": "echo",
                "reward_model": {"style": "rule", "ground_truth": word},
                "extra_info": {"index": index, "split": "train"},
            }
        )
        if agents:
            rows[-1]["agent_name"] = agents[index % len(agents)]
    pd.DataFrame(rows).to_parquet(space.train)
    space.reward.write_text(REWARD_SOURCE)
    return space


def overrides(space: Workspace, *extra: str) -> list[str]:
    """Hydra overrides of a 2-step GRPO run of 2 prompts x 2 responses on the tiny model."""
    return [
        *CPU_OVERRIDES,
        f"data.train_files={space.train}",
        f"data.val_files={space.train}",
        "data.train_batch_size=2",
        "data.max_prompt_length=32",
        "data.max_response_length=8",
        "data.dataloader_num_workers=0",
        f"actor_rollout_ref.model.path={space.model}",
        "actor_rollout_ref.rollout.n=2",
        "actor_rollout_ref.rollout.prompt_length=32",
        "actor_rollout_ref.rollout.response_length=8",
        "actor_rollout_ref.actor.ppo_mini_batch_size=2",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=4",
        "actor_rollout_ref.actor.use_kl_loss=False",
        "actor_rollout_ref.actor.optim.lr=1e-3",
        "algorithm.adv_estimator=grpo",
        "algorithm.use_kl_in_reward=False",
        f"reward.custom_reward_function.path={space.reward}",
        "reward.custom_reward_function.name=compute_score",
        "trainer.total_training_steps=2",
        "trainer.total_epochs=1",
        "trainer.val_before_train=False",
        "trainer.test_freq=-1",
        "trainer.save_freq=-1",
        "trainer.logger=[console,file]",
        "trainer.project_name=aem_cpu",
        "trainer.experiment_name=tiny",
        f"trainer.default_local_dir={space.root / 'checkpoints'}",
        *extra,
    ]


def environment(space: Workspace, ray_folder: str) -> dict[str, str]:
    """The run's environment: the CPU plugin and the test plugins for verl, every cache and HOME
    inside ``space.root``, Ray's temporary files in ``ray_folder`` (a short path: Ray's socket
    paths must stay under 108 characters)."""
    home = space.root / "home"
    pythonpath = [str(REPOSITORY / "src"), str(Path(__file__).resolve().parent)]
    if os.environ.get("PYTHONPATH"):
        pythonpath.append(os.environ["PYTHONPATH"])
    return {
        **os.environ,
        **CPU_ENVIRONMENT,
        "VERL_USE_EXTERNAL_MODULES": ",".join(
            [CPU_ENVIRONMENT["VERL_USE_EXTERNAL_MODULES"], PLUGINS_MODULE]
        ),
        "PYTHONPATH": os.pathsep.join(pythonpath),
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "HF_HOME": str(home / "hf"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "RAY_TMPDIR": ray_folder,
        "RAY_USAGE_STATS_ENABLED": "0",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "VERL_FILE_LOGGER_PATH": str(space.metrics),
        "AEM_VERL_DUMP_DIR": str(space.dumps),
    }


def run(
    space: Workspace, *extra: str, module: str = "verl.trainer.main_ppo", timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``python -m <module> <overrides>`` as a subprocess; output kept in ``space.root/log.txt``."""
    command = [sys.executable, "-m", module, *overrides(space, *extra)]
    started = time.monotonic()
    ray_folder = tempfile.mkdtemp(prefix="aem_ray_", dir="/tmp")
    try:
        result = subprocess.run(
            command,
            env=environment(space, ray_folder),
            cwd=space.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        shutil.rmtree(ray_folder, ignore_errors=True)
    log = f"$ {' '.join(command)}\n{result.stdout}\n{result.stderr}"
    (space.root / "log.txt").write_text(log)
    (space.root / "seconds.txt").write_text(f"{time.monotonic() - started:.1f}\n")
    return result


def logged_steps(space: Workspace) -> list[dict]:
    """The metrics verl's file logger wrote, one dict per step."""
    if not space.metrics.exists():
        return []
    return [json.loads(line)["data"] for line in space.metrics.read_text().splitlines()]


if __name__ == "__main__":
    target = build_workspace(Path(sys.argv[1]))
    finished = run(target, *sys.argv[2:])
    print((target.root / "log.txt").read_text()[-5000:])
    print("exit", finished.returncode, "seconds", (target.root / "seconds.txt").read_text())
