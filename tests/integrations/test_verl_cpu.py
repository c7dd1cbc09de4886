"""The pieces of the verl CPU plugin on their own (no Ray): the cpu platform and what it
registers in verl, the Hugging Face rollout server, and the runtime patches."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import verl_required  # noqa: F401  isort: skip  (skips this module without verl)

import torch
import verl_cpu_run as cpu_run
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM
from verl.workers.config import HFModelConfig, RolloutConfig

from aem.integrations.verl import verl_patches
from aem.integrations.verl.cpu_settings import CPU_ENVIRONMENT
from aem.integrations.verl.hf_rollout import HFRolloutServer, _filtered_logits

REPOSITORY = Path(__file__).resolve().parents[2]


def run_python(code: str, **environment: str) -> str:
    """``code`` in a fresh interpreter (verl resolves its platform once per process)."""
    env = {**os.environ, **environment}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPOSITORY / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_cpu_plugin_registers_through_verls_extension_points() -> None:
    output = run_python(
        """
        import os
        import torch
        import verl  # imports VERL_USE_EXTERNAL_MODULES
        from verl.plugin.platform import get_platform
        from verl.utils.device import get_device_id, get_nccl_backend, get_torch_device
        from verl.workers.engine.base import EngineRegistry
        from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead
        from verl.workers.rollout.base import get_rollout_class
        from verl.workers.rollout.replica import RolloutReplicaRegistry
        from verl.trainer.ppo.v1 import get_trainer_cls
        from verl.workers import engine_workers

        from aem.integrations.verl.hf_rollout import HFReplica, HFServerAdapter

        platform = get_platform()
        assert platform.device_name == "cpu" and get_nccl_backend() == "gloo"
        assert torch.ones(2).to(get_device_id()).device.type == "cpu"
        free, total = get_torch_device().mem_get_info()
        assert 0 < free <= total
        get_torch_device().empty_cache()
        assert get_torch_device().get_device_name() == "CPU"
        assert EngineRegistry.get_engine_cls("language_model", "fsdp2") is FSDPEngineWithLMHead
        assert get_rollout_class("hf", "async") is HFServerAdapter
        assert RolloutReplicaRegistry.get("hf") is HFReplica
        assert get_trainer_cls("aem_sync").__name__ == "AEMPPOTrainerSync"

        os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")
        engine_workers.initialize_global_process_group_ray(timeout_second=None)
        assert torch.distributed.get_backend() == "gloo"
        torch.distributed.destroy_process_group()
        print("ok")
        """,
        **CPU_ENVIRONMENT,
    )
    assert output.strip().splitlines()[-1] == "ok"


# ---------------------------------------------------------------- the Hugging Face rollout


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> cpu_run.Workspace:
    return cpu_run.build_workspace(tmp_path_factory.mktemp("hf_rollout"))


def rollout_server(space: cpu_run.Workspace, **settings: object) -> HFRolloutServer:
    config = OmegaConf.create(
        {
            "_target_": "verl.workers.config.RolloutConfig",
            "name": "hf",
            "prompt_length": 16,
            "response_length": 8,
            "seed": 3,
            **settings,
        }
    )
    model = HFModelConfig(path=str(space.model))
    return HFRolloutServer(config, model, replica_rank=0)


def generate(server: HFRolloutServer, prompt: list[int], **params: object):
    return asyncio.run(server.generate(prompt, dict(params), request_id="r"))


def test_hf_rollout_samples_token_in_token_out(workspace) -> None:
    prompt = [5, 9, 17, 4]
    first = rollout_server(workspace)
    assert isinstance(first.config, RolloutConfig)
    output = generate(first, prompt, temperature=1.0, logprobs=True)
    assert 1 <= len(output.token_ids) <= 8
    assert output.log_probs is not None and len(output.log_probs) == len(output.token_ids)
    assert all(value <= 0.0 for value in output.log_probs)
    # the same seed gives the same samples; max_tokens caps the length
    again = generate(rollout_server(workspace), prompt, temperature=1.0, logprobs=True)
    assert again.token_ids == output.token_ids
    assert len(generate(first, prompt, temperature=1.0, max_tokens=2).token_ids) <= 2
    assert generate(first, prompt, temperature=1.0).log_probs is None

    # greedy decoding equals transformers' own greedy generate
    model = AutoModelForCausalLM.from_pretrained(workspace.model).eval()
    greedy = generate(first, prompt, temperature=0.0, ignore_eos=True)
    with torch.no_grad():
        reference = model.generate(
            torch.tensor([prompt]), max_new_tokens=8, do_sample=False, eos_token_id=None
        )[0, len(prompt) :].tolist()
    assert greedy.token_ids == reference
    assert generate(first, prompt, temperature=1.0, top_k=1, ignore_eos=True).token_ids == reference


def test_hf_rollout_log_probs_follow_the_configured_mode(workspace) -> None:
    prompt = [7, 3, 11]
    model = AutoModelForCausalLM.from_pretrained(workspace.model).eval()
    for mode, temperature in (("raw_logprobs", 2.0), ("processed_logprobs", 2.0)):
        server = rollout_server(workspace, logprobs_mode=mode)
        output = generate(server, prompt, temperature=temperature, logprobs=True, max_tokens=1)
        with torch.no_grad():
            logits = model(torch.tensor([prompt])).logits[0, -1]
        scale = temperature if mode == "processed_logprobs" else 1.0
        expected = torch.log_softmax(logits / scale, dim=-1)[output.token_ids[0]]
        assert output.log_probs[0] == pytest.approx(float(expected), abs=1e-5)


def test_hf_rollout_takes_pushed_weights(workspace) -> None:
    server = rollout_server(workspace)
    prompt = [5, 9, 17, 4]
    before = generate(server, prompt, temperature=0.0, ignore_eos=True).token_ids
    state = {name: torch.zeros_like(value) for name, value in server.model.state_dict().items()}
    asyncio.run(server.update_weights(state, global_steps=4))
    after = generate(server, prompt, temperature=0.0, ignore_eos=True)
    assert after.token_ids == [0] * 8 != before  # all-zero weights: uniform logits, argmax 0
    assert after.extra_fields["global_steps"] == 4
    with pytest.raises(ValueError, match="unexpected"):
        asyncio.run(server.update_weights({"not.a.weight": torch.zeros(1)}, global_steps=5))


def test_top_k_and_top_p_filtering() -> None:
    logits = torch.tensor([2.0, 1.0, 0.5, -1.0])
    kept = torch.isfinite(_filtered_logits(logits, 1.0, 2, 1.0))
    assert kept.tolist() == [True, True, False, False]
    probabilities = torch.softmax(logits, dim=-1)  # 0.61, 0.22, 0.14, 0.03
    nucleus = torch.isfinite(_filtered_logits(logits, 1.0, -1, 0.7))
    assert nucleus.tolist() == [True, True, False, False]
    assert probabilities[0] < 0.7 < probabilities[:2].sum()
    shuffled = logits[[2, 0, 3, 1]]  # order does not matter
    assert torch.isfinite(_filtered_logits(shuffled, 1.0, -1, 0.7)).tolist() == [
        False,
        True,
        False,
        True,
    ]


# ---------------------------------------------------------------- runtime patches


def test_legacy_trainer_class_swaps_the_name_run_looks_up_and_restores_it() -> None:
    from verl.trainer import main_ppo_v0

    run = main_ppo_v0.TaskRunner.__ray_actor_class__.run

    class Marker:
        pass

    original = run.__globals__["RayPPOTrainer"]
    with verl_patches.legacy_trainer_class(run, Marker):
        assert run.__globals__["RayPPOTrainer"] is Marker
    assert run.__globals__["RayPPOTrainer"] is original


def test_trl_value_head_check_matches_what_trl_has() -> None:
    try:
        from trl import AutoModelForCausalLMWithValueHead

        has_value_head = True
    except ImportError:
        try:
            from trl.experimental.ppo import AutoModelForCausalLMWithValueHead  # noqa: F401

            has_value_head = True
        except ImportError:
            has_value_head = False
    assert verl_patches.trl_value_head_available() is has_value_head
