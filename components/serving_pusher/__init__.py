"""Pusher that writes TF Serving versions (and their TFLite twin) atomically."""
from components.serving_pusher.component import ServingPusher

__all__ = ["ServingPusher"]
