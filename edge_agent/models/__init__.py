"""A model component on the device: its lifecycle slot, inference pool, preprocessing and result mapping."""
