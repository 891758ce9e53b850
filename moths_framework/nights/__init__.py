"""From trap frames to nights: when each frame was taken, which deployment and night it
belongs to, and the tracks that follow one moth across a night's frames. No torch."""
