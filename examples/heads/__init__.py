"""Example heads: each file is one complete head (see last_frame_mlp.py)."""
