"""Device lab: partner device testing at scale, with failure prediction and test selection."""
