#!/usr/bin/env bash
# GRPO + AEM in the paper's setting (Sec. 5 / App. D.2), with verl-agent, on ALFWorld or WebShop.
# Run from a verl-agent checkout that has the apply_aem lines of examples/verl/README.md in
# verl/trainer/ppo/ray_trainer.py, with aem installed in the same environment.
#   bash run_grpo_aem.sh alfworld|webshop [vllm] [extra Hydra overrides...]
#   MODEL=Qwen/Qwen2.5-7B-Instruct N_GPUS=4 TP=2 bash run_grpo_aem.sh webshop
# NOT RUN in the aem project (no GPU there); only the CPU tests in tests/integrations/ ran.
set -euo pipefail
ENV=${1:-}
case "$ENV" in
    alfworld)  # env name, step cap, prompt length, actor / log-prob micro-batch per GPU
        ENV_NAME=alfworld/AlfredTWEnv; MAX_STEPS=50; PROMPT_LEN=2048; ACTOR_MB=32; LOGPROB_MB=32 ;;
    webshop)
        ENV_NAME=Webshop; MAX_STEPS=15; PROMPT_LEN=4096; ACTOR_MB=8; LOGPROB_MB=16 ;;
    *)
        echo "usage: bash run_grpo_aem.sh alfworld|webshop [vllm] [Hydra overrides...] (got '$ENV')" >&2
        exit 2 ;;
esac
shift
ENGINE=${1:-vllm}
if [ $# -gt 0 ]; then shift; fi

if ! grep -q "apply_aem" verl/trainer/ppo/ray_trainer.py 2>/dev/null; then
    echo "run this from a verl-agent checkout patched as in aem's examples/verl/README.md" >&2
    exit 1
fi

MODEL=${MODEL:-Qwen/Qwen2.5-1.5B-Instruct}
N_GPUS=${N_GPUS:-2}
TP=${TP:-1}
train_data_size=16   # groups (tasks) per rollout
val_data_size=128
group_size=8         # trajectories per task

python3 -m examples.data_preprocess.prepare --mode text \
    --train_data_size "$train_data_size" --val_data_size "$val_data_size"

python3 -m verl.trainer.main_ppo \
    algorithm.adv_estimator=grpo \
    +algorithm.aem.enable=True \
    +algorithm.aem.temperature=1.0 \
    data.train_files="$HOME/data/verl-agent/text/train.parquet" \
    data.val_files="$HOME/data/verl-agent/text/test.parquet" \
    data.train_batch_size=$train_data_size \
    data.val_batch_size=$val_data_size \
    data.max_prompt_length=$PROMPT_LEN \
    data.max_response_length=512 \
    data.filter_overlong_prompts=True \
    data.truncation=error \
    data.return_raw_chat=True \
    actor_rollout_ref.model.path="$MODEL" \
    actor_rollout_ref.model.use_remove_padding=True \
    actor_rollout_ref.model.enable_gradient_checkpointing=True \
    actor_rollout_ref.actor.optim.lr=1e-6 \
    actor_rollout_ref.actor.ppo_mini_batch_size=256 \
    actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=$ACTOR_MB \
    actor_rollout_ref.actor.use_kl_loss=True \
    actor_rollout_ref.actor.kl_loss_coef=0.01 \
    actor_rollout_ref.actor.kl_loss_type=low_var_kl \
    actor_rollout_ref.actor.use_invalid_action_penalty=True \
    actor_rollout_ref.actor.invalid_action_penalty_coef=0.1 \
    actor_rollout_ref.rollout.name="$ENGINE" \
    actor_rollout_ref.rollout.tensor_model_parallel_size="$TP" \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.6 \
    actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=$LOGPROB_MB \
    actor_rollout_ref.rollout.val_kwargs.temperature=0.4 \
    actor_rollout_ref.rollout.val_kwargs.do_sample=True \
    actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=$LOGPROB_MB \
    actor_rollout_ref.ref.fsdp_config.param_offload=True \
    algorithm.use_kl_in_reward=False \
    env.env_name=$ENV_NAME \
    env.seed=0 \
    env.max_steps=$MAX_STEPS \
    env.rollout.n=$group_size \
    trainer.critic_warmup=0 \
    trainer.logger="['console','wandb']" \
    trainer.project_name="aem_$ENV" \
    trainer.experiment_name="grpo_aem_$(basename "$MODEL")" \
    trainer.n_gpus_per_node="$N_GPUS" \
    trainer.nnodes=1 \
    trainer.save_freq=-1 \
    trainer.test_freq=5 \
    trainer.total_epochs=150 \
    trainer.val_before_train=True "$@"
