"""Process and speed measurements of an evaluation: peak resident memory, the environment, decode timing.

Peak RSS is the kernel's high-water mark (Linux ``/proc/self/status`` VmHWM), reset before each method
(``/proc/self/clear_refs`` "5", proc(5)) so it is that method's peak; elsewhere it is the process's
lifetime peak (``getrusage``) and the result says so (``RSSScope``). Timings synchronise CUDA first and
never on the CPU (gpt-fast synchronises unconditionally, which breaks CPU runs).
"""

from __future__ import annotations

import ctypes
import functools
import gc
import inspect
import platform
import re
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from evaluation.results import RSSScope

DECODE_PROMPT_TOKENS = 32
"""Prompt tokens before the timed decode steps (the first tokens of the first window)."""


def reset_peak_rss() -> RSSScope:
    """Reset the kernel's peak-RSS mark (Linux ``/proc/self/clear_refs`` "5"); returns the scope measured."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return RSSScope.METHOD
    except OSError:
        return RSSScope.PROCESS


def peak_rss_bytes() -> int | None:
    """VmHWM of this process in bytes (Linux); else the lifetime peak from getrusage."""
    try:
        status = Path("/proc/self/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.M)
        if match:
            return int(match.group(1)) * 1024
    except OSError:
        pass
    try:
        import resource

        scale = 1 if platform.system() == "Darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    except (ImportError, OSError):
        return None


@functools.cache
def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the system (glibc ``malloc_trim``; freed small
    blocks otherwise stay in the process's arenas and in its RSS), and CUDA's cached blocks to the driver."""
    gc.collect()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU, so timings stay honest on both."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def environment(device: torch.device) -> dict:
    """What the numbers were measured with: library versions, device and its name, threads, platform."""
    import transformers

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
            found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
            name = found.group(1).strip() if found else name
        except OSError:
            pass
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": name,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


def decode_ms_per_token(model: nn.Module, prompt: torch.Tensor, n_tokens: int) -> float:
    """Median wall ms of one batch-1 greedy decode step with a KV cache, after a prompt [1, T].

    The steps run twice and the second run is timed: attention kernels are chosen per sequence length
    the first time one is seen (cuDNN plans on CUDA), which would otherwise bill the first method.
    """
    # transformers 5.24 names the KV cache argument ``cache`` (``past_key_values`` before, deprecated).
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    device = prompt.device
    times = []
    with torch.inference_mode():
        for timed in (False, True):
            out = model(input_ids=prompt, use_cache=True)
            for _ in range(n_tokens):
                token = out.logits[:, -1:].argmax(-1)
                sync(device)
                start = time.perf_counter()
                out = model(input_ids=token, use_cache=True, **{cache_arg: getattr(out, cache_arg)})
                sync(device)
                if timed:
                    times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)
