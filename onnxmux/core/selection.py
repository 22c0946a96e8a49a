"""Turning the user's ``providers`` argument into provider instances, in priority order."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from onnxmux.core import discovery
from onnxmux.core.errors import EPFail, InvalidArgument, ProviderError
from onnxmux.core.options import SessionOptions
from onnxmux.core.optimizer.editing import ONNXMUX_DOMAIN
from onnxmux.core.provider import ExecutionProvider, KernelProvider, ProviderSettings, transfer_problem

logger = logging.getLogger("onnxmux")

ProviderSpec = Any  # a name, or a (name, options) tuple


def select_providers(
    providers: Sequence[ProviderSpec] | None,
    provider_options: Sequence[dict[str, Any]] | None = None,
    cpu_fallback: bool = True,
) -> list[ExecutionProvider]:
    """Instantiate the requested providers; unknown names raise, unavailable ones warn and drop."""
    specs = _normalize(providers, provider_options)
    chosen: list[ExecutionProvider] = []
    for name, options in specs:
        entry = discovery.find(name)
        if entry is None:
            known_name = discovery.known_name(name)
            if known_name is not None:  # an onnxruntime provider no installed package provides
                warnings.warn(f"{known_name} is not available and is skipped: {discovery.not_installed_reason(known_name)}", stacklevel=3)
                continue
            known = ", ".join(sorted({*discovery.get_all_providers(), *_aliases()}))
            raise InvalidArgument(f"unknown execution provider '{name}'; known providers: {known}")
        if any(p.name == entry.name for p in chosen):
            continue
        reason = entry.unavailable_reason()
        if reason is not None and reason.startswith(discovery.CHECK_FAILED) and not cpu_fallback:
            raise EPFail(f"{entry.name}.unavailable_reason raised ({reason}); no fallback because "
                         "session.disable_cpu_ep_fallback is set")
        if reason is not None:
            warnings.warn(f"{entry.name} is not available and is skipped: {reason}", stacklevel=3)
            continue
        try:
            provider = entry.cls(options)  # type: ignore[misc]
        except InvalidArgument:
            raise
        except Exception as exc:
            raise ProviderError(f"{entry.name} failed to initialise: {type(exc).__name__}: {exc}") from exc
        problem = transfer_problem(provider)
        if problem is not None:
            raise ProviderError(f"{entry.name} is refused: {problem}")
        chosen.append(provider)
    if cpu_fallback and not any(p.name == "CPUExecutionProvider" for p in chosen):
        cpu = discovery.find("CPUExecutionProvider")
        chosen.append(cpu.cls({}))  # type: ignore[union-attr,misc]
    return chosen


def configure_providers(providers: Sequence[ExecutionProvider], options: SessionOptions, model_dir: Path | None) -> None:
    """Give each provider its ProviderSettings: its options with defaults and the session's settings."""
    for provider in providers:
        provider.configure(
            ProviderSettings(
                options=dict(provider.option_defaults) | provider.options,
                intra_op_num_threads=options.intra_op_num_threads,
                inter_op_num_threads=options.inter_op_num_threads,
                graph_optimization_level=int(options.graph_optimization_level),
                config=options.config_entries(),
                model_dir=model_dir,
            )
        )


def private_ops_of(providers: Sequence[ExecutionProvider]) -> Callable[[str], bool]:
    """Whether every provider has a kernel for a com.onnxmux op: the optimizer makes private ops
    only then, so a compile-based provider never sees one and none splits a partition."""

    def allowed(op_type: str) -> bool:
        return all(isinstance(p, KernelProvider) and p.registry.versions(ONNXMUX_DOMAIN, op_type) for p in providers)

    return allowed


def _normalize(
    providers: Sequence[ProviderSpec] | None, provider_options: Sequence[dict[str, Any]] | None
) -> list[tuple[str, dict[str, Any]]]:
    if providers is None:
        providers = ["CPUExecutionProvider"]
    if isinstance(providers, str):
        raise InvalidArgument("providers must be a list of provider names, not a single string")
    if provider_options is not None and len(provider_options) != len(providers):
        raise InvalidArgument("provider_options must have one dict per entry of providers")
    specs = []
    for i, spec in enumerate(providers):
        if isinstance(spec, (tuple, list)) and len(spec) == 2:
            name, options = spec
        else:
            name, options = spec, provider_options[i] if provider_options is not None else {}
        if not isinstance(name, str):
            raise InvalidArgument(f"provider entry {i} must be a name or a (name, options) tuple, got {spec!r}")
        if not isinstance(options, dict):
            raise InvalidArgument(f"options for provider '{name}' must be a dict, got {type(options).__name__}")
        specs.append((name, options))
    return specs


def _aliases() -> set[str]:
    return {alias for entry in discovery.discover().values() for alias in entry.aliases}
