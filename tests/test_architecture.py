"""The tree tells the architecture (docs/ARCHITECTURE.md), and these checks keep it telling the truth:
no import cycles, the layers import downwards only, and the forecaster never sees the trader."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

SRC = REPO_ROOT / "src"
PACKAGE = SRC / "kronos_bot"
# Below the trader: they must not import it. The simulated broker keeps its state in the journal's file,
# so it (and the factory that builds it) may use the journal -- the one documented exception.
LOWER = ("kronos_bot.broker", "kronos_bot.market", "kronos_bot.gates", "kronos_bot.kronos", "kronos_bot.forecaster")
JOURNAL_USERS = ("kronos_bot.broker.sim", "kronos_bot.broker.sim_store", "kronos_bot.broker.factory")
SHARED = (
    "kronos_bot.config",
    "kronos_bot.logs",
    "kronos_bot.domain",
    "kronos_bot.forecast_types",
    "kronos_bot.reading",
    "kronos_bot.retry",
    "kronos_bot.systemd",
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules (and their parent packages) this file imports at module level, TYPE_CHECKING included."""
    found: set[str] = set()
    nodes = list(ast.parse(path.read_text()).body)
    for node in list(nodes):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            nodes += node.body
    for node in nodes:
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        for target in targets:
            parts = target.split(".")
            found |= {".".join(parts[:i]) for i in range(2, len(parts) + 1) if ".".join(parts[:i]) in modules}
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        # A module's own parent packages are imported before it anyway: not an edge of its own.
        graph[name] = {t for t in _imports(path, modules) if t != name and not name.startswith(t + ".")}
    return graph


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_layers_import_downwards_only() -> None:
    graph = _graph()
    wrong = []
    for name, targets in graph.items():
        trader = sorted(t for t in targets if t == "kronos_bot.trader" or t.startswith("kronos_bot.trader."))
        if name.startswith(LOWER) and trader:
            allowed = name in JOURNAL_USERS and all(
                t in ("kronos_bot.trader", "kronos_bot.trader.journal", "kronos_bot.trader.records") for t in trader
            )
            if not allowed:
                wrong.append(f"{name} imports {trader}")
        if name in SHARED:
            upward = sorted(
                t
                for t in targets
                if t.startswith(
                    ("kronos_bot.trader", "kronos_bot.backtest", "kronos_bot.commands", "kronos_bot.kronos")
                )
            )
            if upward:
                wrong.append(f"shared module {name} imports {upward}")
        if name.startswith("kronos_bot.forecaster") and any(t.startswith("kronos_bot.trader") for t in targets):
            wrong.append(f"the forecaster's {name} imports the trader")
    assert wrong == []


def test_the_root_holds_only_what_both_processes_share() -> None:
    loose = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__", "cli"))
    assert loose == sorted(name.rsplit(".", 1)[1] for name in SHARED)
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == {
        "backtest",
        "broker",
        "commands",
        "forecaster",
        "gates",
        "kronos",
        "market",
        "notify",
        "skill",
        "trader",
    }
