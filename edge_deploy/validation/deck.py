"""The validation report as one self-contained HTML page (tables and inline SVG plots).

tasks/validate.py shows it as a Flyte Deck; the gate also writes it beside the report as
validation.html. Everything comes from the `ValidationReport`, so a stored JSON report renders the
same page again. No flytekit here.
"""

from __future__ import annotations

import html
import io
import itertools
import math
from collections.abc import Iterable, Sequence

from edge_deploy.validation.report import (
    OptimizationReport,
    OutputParity,
    ParityReport,
    SpeedReport,
    StructureReport,
    ValidationReport,
)

STYLE = """
.edge-validation{font-family:system-ui,sans-serif;font-size:14px;color:#222}
.edge-validation table{border-collapse:collapse;margin:6px 0 16px}
.edge-validation th,.edge-validation td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
.edge-validation th{background:#f3f3f3}
.edge-validation td.num{text-align:right;font-family:monospace}
.edge-validation .pass{color:#0a7a28;font-weight:600}.edge-validation .fail{color:#b00020;font-weight:600}
.edge-validation .verdict{font-size:20px;padding:8px 12px;border-radius:4px;display:inline-block}
.edge-validation .verdict.pass{background:#e3f6e8}.edge-validation .verdict.fail{background:#fde7ea}
.edge-validation .plots{display:flex;flex-wrap:wrap;gap:12px}
"""


def render_html(report: ValidationReport) -> str:
    sections = [
        f"<style>{STYLE}</style>",
        _summary(report),
        _structure(report.structure),
        _parity(report.parity) if report.parity else _skipped("Parity", report),
        _speed(report.speed, report.optimization) if report.speed else _skipped("Speed", report),
        _optimization(report.optimization) if report.optimization else "",
        _settings(report),
    ]
    return '<div class="edge-validation">' + "\n".join(sections) + "</div>"


# Sections ---------------------------------------------------------------------------------------


def _summary(report: ValidationReport) -> str:
    verdict = "PASS" if report.passed else "FAIL"
    model = report.model
    rows = [
        ("task / codebase", f"{model.task} / {model.codebase}"),
        ("deploy profile", model.deploy_profile),
        ("ONNX", f"{model.onnx_file}, {_mb(model.onnx_bytes)}, sha256 {model.onnx_sha256[:16]}…"),
        ("ships", f"{report.shipped_onnx} (sha256 {report.shipped_sha256[:16]}…)"),
        ("model sha256", model.model_sha256[:16] + "…"),
        ("validation time", f"{report.seconds:.1f} s"),
    ]
    if report.serving is not None:
        serving = report.serving
        rows.append(("class names", f"{serving.classes}, from {serving.classes_source}"))
        rows.append(("photos (/v1/predict)", f"off: {serving.unservable}" if serving.unservable
                     else f"prepared by {serving.pipeline_source}"))  # fmt: skip
    failure = f"<p class='fail'>{_e(report.failure)}</p>" if report.failure else ""
    for item in report.loosened:  # a weakened gate says so at the top, next to its verdict
        failure += f"<p class='fail'>Loosened by request: {_e(item)}</p>"
    return f"<h2>ONNX validation <span class='verdict {verdict.lower()}'>{verdict}</span></h2>{failure}" + _table(
        ["", ""], rows, header=False
    )


def _structure(structure: StructureReport) -> str:
    checks = _table(
        ["check", "result", "detail"],
        [(check.name, _verdict(check.passed), check.detail) for check in structure.checks],
        raw_columns={1},
    )
    io_rows = [("input", name, str(dims)) for name, dims in structure.inputs.items()]
    io_rows += [("output", name, str(dims)) for name, dims in structure.outputs.items()]
    opsets = ", ".join(f"{domain} {version}" for domain, version in structure.opset_imports.items())
    extra = f"<p>IR version {structure.ir_version}; opsets: {_e(opsets)}"
    if structure.custom_ops:
        extra += f"; custom operators: {_e(', '.join(structure.custom_ops))}"
    if structure.custom_op_library:
        extra += f"; custom-op library: {_e(structure.custom_op_library)}"
    return "<h3>Structure</h3>" + checks + _table(["", "name", "shape"], io_rows) + extra + "</p>"


def _parity(parity: ParityReport, title: str = "Parity: ONNX Runtime vs PyTorch") -> str:
    summary_rows = []
    for name in parity.output_names:
        worst = parity.worst(name)
        results = [item for case in parity.cases for item in case.outputs if item.name == name]
        summary_rows.append(
            (
                name,
                _sci(worst.max_abs),
                _sci(max(item.max_rel for item in results)),
                _sci(max(item.mean_abs for item in results)),
                _sci(max(item.p99_abs for item in results)),
                f"{worst.atol:.0e} / {worst.rtol:.0e}",
                str(sum(item.violations for item in results)),
                _verdict(all(item.passed for item in results)),
            )
        )
    headers = ["output", "max abs", "max rel", "mean abs", "p99 abs", "atol / rtol", "violations", "result"]
    summary = _table(headers, summary_rows, raw_columns={7}, numeric={1, 2, 3, 4, 6})
    case_rows = []
    for case in parity.cases:
        label = f"{case.name} (PyTorch {case.reference_seconds * 1000:.0f} ms, ONNX {case.onnx_seconds * 1000:.0f} ms)"
        case_rows += [_case_row(label, item) for item in case.outputs]
        if case.task is not None:
            metrics = ", ".join(f"{key} {_metric(value)}" for key, value in case.task.metrics.items())
            case_rows.append((label, case.task.kind, f"{metrics}. {case.task.detail}", _verdict(case.task.passed)))
    cases = _table(["case", "output / check", "figures", "result"], case_rows, raw_columns={3})
    failure = f"<p class='fail'>{_e(parity.failure)}</p>" if parity.failure else ""
    plots = "".join(_error_plot(name, parity) for name in parity.output_names)
    return (
        f"<h3>{_e(title)} ({_e(parity.provider)}, {len(parity.cases)} cases)</h3>{failure}{summary}"
        f"<div class='plots'>{plots}</div><h4>Per case</h4>{cases}"
    )


def _case_row(case: str, item: OutputParity) -> tuple[str, ...]:
    figures = (
        f"max abs {_sci(item.max_abs)}, max rel {_sci(item.max_rel)}, mean abs {_sci(item.mean_abs)}, "
        f"p99 abs {_sci(item.p99_abs)}; {item.violations} of {item.elements} beyond "
        f"atol {item.atol:.0e} + rtol {item.rtol:.0e}*|ref|"
    )
    return (case, item.name, figures + (f" ({item.note})" if item.note else ""), _verdict(item.passed))


def _speed(raw: SpeedReport, optimization: OptimizationReport | None) -> str:
    variants = [("raw", raw)]
    if optimization is not None and optimization.speed is not None:
        variants.append(("optimized" + (" (kept)" if optimization.kept else " (dropped)"), optimization.speed))
    rows = [
        (
            label,
            _mb(speed.model_bytes),
            f"{speed.load_seconds * 1000:.1f}",
            f"{speed.p50_ms:.2f}",
            f"{speed.p95_ms:.2f}",
            f"{speed.mean_ms:.2f}",
            f"{speed.min_ms:.2f}",
        )
        for label, speed in variants
    ]
    table = _table(
        ["model", "size", "session load ms", "p50 ms", "p95 ms", "mean ms", "min ms"], rows, numeric={1, 2, 3, 4, 5, 6}
    )
    threads = raw.intra_op_threads or "ONNX Runtime default"
    interleaved = " (raw and optimized timed interleaved, run by run)" if len(variants) > 1 else ""
    note = (
        f"<p>Inputs {_e(raw.inputs)}; {raw.warmup_runs} warm-up runs, {raw.timed_runs} timed runs{interleaved}, "
        f"stopped by the {_e(raw.stopped_by)} ({raw.timing_seconds:.1f} s of a {raw.time_budget_s:g} s budget); "
        f"intra-op threads: {_e(threads)}; {_e(raw.graph_optimization)}.</p>"
    )
    return "<h3>Speed (ONNX Runtime, CPU)</h3>" + table + note + _latency_plot(variants)


def _optimization(optimization: OptimizationReport) -> str:
    rows = [("method", optimization.method), ("result", optimization.reason)]
    if optimization.speedup is not None:
        rows.append(("p50 speedup", f"{optimization.speedup:.3f}x"))
    body = _table(["", ""], rows, header=False)
    if optimization.parity is not None:
        body += _parity(optimization.parity, "Parity of the optimized model")
    return "<h3>Optimization</h3>" + body


def _settings(report: ValidationReport) -> str:
    settings = [(name, str(value)) for name, value in vars(report.settings).items()]
    versions = list(report.versions.items())
    return (
        "<h3>Settings and versions</h3>"
        + _table(["setting", "value"], settings)
        + _table(["package", "version"], versions)
    )


def _skipped(title: str, report: ValidationReport) -> str:
    return f"<h3>{_e(title)}</h3><p>Not run: {_e(report.failure or 'an earlier check failed')}</p>"


# Plots ------------------------------------------------------------------------------------------


def _error_plot(name: str, parity: ParityReport) -> str:
    results = [item for case in parity.cases for item in case.outputs if item.name == name]
    if not results or not results[0].histogram.counts:
        return ""
    edges = results[0].histogram.log10_edges
    counts = [sum(item.histogram.counts[index] for item in results) for index in range(len(edges) - 1)]
    exact = sum(item.histogram.exact for item in results)
    figure, axes = _figure()
    axes.bar(edges[:-1], counts, width=[b - a for a, b in itertools.pairwise(edges)], align="edge")
    atol = results[0].atol
    if atol > 0:
        axes.axvline(math.log10(atol), color="#b00020", linestyle="--", label=f"atol {atol:.0e}")
        axes.legend(loc="upper left", fontsize=8)
    axes.set_xlabel("log10 |onnx - pytorch|")
    axes.set_ylabel("elements")
    axes.set_yscale("symlog")
    axes.set_title(f"{name}: {exact} exact, {sum(counts)} differ", fontsize=10)
    return _svg(figure, f"Error distribution of output '{name}' over {len(results)} cases")


def _latency_plot(variants: Sequence[tuple[str, SpeedReport]]) -> str:
    figure, axes = _figure()
    axes.boxplot([speed.latencies_ms for _, speed in variants], tick_labels=[label for label, _ in variants])
    axes.set_ylabel("latency per run (ms)")
    axes.set_title("latency after warm-up", fontsize=10)
    return "<div class='plots'>" + _svg(figure, "ONNX Runtime latency per run") + "</div>"


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.2, 3.0), dpi=100)
    return figure, figure.add_subplot()


def _svg(figure, caption: str) -> str:
    import matplotlib

    buffer = io.StringIO()
    figure.tight_layout()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text: smaller and searchable
        figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return f"<figure>{text[text.index('<svg') :]}<figcaption>{_e(caption)}</figcaption></figure>"


# Small formatting helpers ------------------------------------------------------------------------


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    header: bool = True,
    raw_columns: set[int] = frozenset(),
    numeric: set[int] = frozenset(),
) -> str:
    head = "<tr>" + "".join(f"<th>{_e(cell)}</th>" for cell in headers) + "</tr>" if header else ""
    body = ""
    for row in rows:
        cells = []
        for index, cell in enumerate(row):
            text = str(cell) if index in raw_columns else _e(cell)
            css = " class='num'" if index in numeric else ""
            cells.append(f"<td{css}>{text}</td>")
        body += "<tr>" + "".join(cells) + "</tr>"
    return f"<table>{head}{body}</table>"


def _verdict(passed: bool) -> str:
    return "<span class='pass'>pass</span>" if passed else "<span class='fail'>FAIL</span>"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _sci(value: float) -> str:
    return f"{value:.2e}" if math.isfinite(value) else str(value)


def _metric(value: float) -> str:
    return f"{value:.4g}" if not float(value).is_integer() else str(int(value))


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
