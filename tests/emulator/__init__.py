"""Upstream LLM provider emulator for end-to-end tests.

    from tests.emulator import Emulator, Fault

    with Emulator(name="a", api_key="emu-key") as emu:
        emu.push_fault(Fault(status=503, retry_after=1))
        ...  # point the gateway (or an SDK) at emu.base_url

See README.md in this directory.
"""

from .faults import Fault, FaultSyntaxError
from .server import Emulator, RecordedRequest

__all__ = ["Emulator", "Fault", "FaultSyntaxError", "RecordedRequest"]
