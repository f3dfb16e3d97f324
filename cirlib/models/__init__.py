"""Models: the encoder wrapper (toy or open_clip) and the composition heads."""
