"""The policy model: build (tiny or local checkpoint, FSDP2-sharded), completion logits or hidden states, export."""
from visd_core.model.build import build_model, build_unsharded, compute_dtype, model_config, resolve_attn
from visd_core.model.export import export_hf
from visd_core.model.logits import (CompletionHidden, CompletionLogits, CompletionOutput, PolicyBatch,
                                    completion_hidden, completion_logits, map_completion_logits, mrope_position_ids)
from visd_core.model.policy import Qwen2_5_VLPolicy
