"""Evaluation: COCO metrics of predictions (`evaluator`, on faster-coco-eval or pycocotools by
`coco_engine`), the `eval --report` analysis (`coco_analysis`, `report`), the official Cityscapes
and LVIS scorers (`cityscapes_eval`, `lvis_eval`), and inference benchmarking (`benchmark`)."""
