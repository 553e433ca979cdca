"""Training machinery: schedules, MLE and discriminator pre-training steps, adversarial losses,
straight-through rollouts with truncated back-propagation, and the stage runner."""
