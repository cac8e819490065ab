"""Training machinery shared by every algorithm: the accelerator, schedules, the step loop."""
