"""Deployment estimates: named devices, the roofline time of a measured call, effective attention, MFU.

Plain data and arithmetic: importing this never imports torch (``attention.from_mask`` imports it
only when given a tensor). See docs/deployment.md.
"""

from pytest_flopbudget.deploy import attention
from pytest_flopbudget.deploy.attention import AttentionPattern, unmasked_pairs
from pytest_flopbudget.deploy.devices import DEVICES, Device, device, load_devices, match_device, register_device
from pytest_flopbudget.deploy.roofline import Estimate, OpTime, estimate, figures_id, mfu, peak_rate

__all__ = [
    "DEVICES", "AttentionPattern", "Device", "Estimate", "OpTime", "attention", "device", "estimate", "figures_id",
    "load_devices", "match_device", "mfu", "peak_rate", "register_device", "unmasked_pairs",
]
