"""Grounded video data: the record schema, the JSONL reader, video decoding into Qwen2.5-VL inputs,
and the synthetic moving-shapes dataset."""
