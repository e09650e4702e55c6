"""vcam producer: feeds frames held in DMA-BUFs to a vcam virtual camera."""
