"""The captures: how the operators of a call are seen.

- :mod:`.trace`: the TorchScript trace (torchprofile's view of the operators, the default counter).
- :mod:`.dispatch`: the dispatch capture (every ATen operator as dispatched, as FlopCounterMode sees them).
- :mod:`.training`: a training step (forward and loss, backward, optimizer step) on the dispatch capture.
- :mod:`.tally`, :mod:`.calls`, :mod:`.callables`: what the captures share (the MAC tally by module and
  operator, following module calls, resolving the callable to count).
"""
