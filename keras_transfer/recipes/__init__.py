"""Fine-tuning recipes over keras.applications backbones."""
