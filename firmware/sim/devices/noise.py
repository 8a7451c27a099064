"""Small random noise for analog models: a live input is never perfectly still."""
import random


def jitter(amplitude):
    """A value uniform in [-amplitude, amplitude]."""
    return (random.random() * 2.0 - 1.0) * amplitude
