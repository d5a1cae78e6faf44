"""VisionCoach's VP-Selector (visioncoach §3.3, App. C): which visual prompt helps a hard sample.

    python -m visd_core.selector labels ...     # eq. 3 labels from proxy reasoners (labels.py, proxy.py)
    python -m visd_core.selector train ...      # a Qwen2.5-VL + LoRA classifier (train.py, model.py, lora.py)
    selector = VPSelector.from_dir(cfg.visioncoach.selector_path)
    kinds = selector.predict(records)           # frozen, greedy; one of visual_prompts.KINDS each
"""
from visd_core.selector.labels import KindScore, choose_label
from visd_core.selector.lora import LoRALinear, add_lora, load_adapter, merge_lora, save_adapter
from visd_core.selector.model import VPSelector

__all__ = ["KindScore", "LoRALinear", "VPSelector", "add_lora", "choose_label", "load_adapter", "merge_lora",
           "save_adapter"]
