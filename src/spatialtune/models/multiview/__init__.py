"""Multi-view 3D scenes: encoder → Perceiver projector (+ geometry tokens) → causal Qwen LM (see docs/multiview.md)."""
