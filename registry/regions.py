"""行政区划树 The region tree (county → township → village, RegionLevel), in one place.

* ``RegionTree`` — a snapshot of every region with its name, level, parent, children and resident
  population (the rates and the report load one per run; ``descendants_and_self`` is the cascade).
* ``LiveRegionTree`` — the same tree for a long-lived process (the web app): reloaded in the
  background after ``TTL_SECONDS``, on next use after ``invalidate()``; thread-safe, memoised descendants.
* SQL twins of the cascade "this region and everything below it": ``region_subtree`` (recursive CTE,
  any depth), ``villages_under`` (the villages at or below a region, shaped by its level so the
  planner's estimate is right) and ``region_cascade_text`` (the same three-level test as SQL text
  for the hand-written statements of the fast web path). tests/test_team_rules.py checks they agree
  with ``RegionTree.descendants_and_self`` on random trees.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import aliased

from registry.codes import RegionLevel
from registry.errors import InvalidInput, NotFound
from registry.models import Region

log = logging.getLogger(__name__)


@dataclass
class RegionTree:
    """行政区划树 Every region with its parent, children and resident population."""

    names: dict[str, str]
    levels: dict[str, str]
    parents: dict[str, str | None]
    own_population: dict[str, int | None]
    children: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, conn: sa.Connection) -> "RegionTree":
        r = Region.__table__
        rows = conn.execute(sa.select(r.c.code, r.c.name, r.c.level, r.c.parent_code, r.c.population)).all()
        tree = cls({c: n for c, n, *_ in rows}, {c: lv for c, _, lv, *_ in rows},
                   {c: p for c, _, _, p, _ in rows}, {c: pop for c, *_, pop in rows})
        tree.children = {code: [] for code in tree.names}
        for code, parent in tree.parents.items():
            if parent in tree.children:
                tree.children[parent].append(code)
        for kids in tree.children.values():
            kids.sort()
        return tree

    def roots(self) -> list[str]:
        return sorted(c for c, p in self.parents.items() if p is None or p not in self.names)

    def default_region(self) -> str:
        roots = self.roots()
        if not roots:
            raise NotFound(message="尚未导入行政区划（regions.csv）", code="NO_REGIONS")
        if len(roots) > 1:
            raise InvalidInput.single("REGION_REQUIRED", f"有多个顶级地区（{'、'.join(roots[:5])}），请用 --region 指定",
                                      column="region")
        return roots[0]

    def check(self, code: str) -> str:
        if code not in self.names:
            raise NotFound(message=f"地区编码“{code}”不存在", code="REGION_NOT_FOUND")
        return code

    def ancestors_and_self(self, code: str) -> list[str]:
        out, seen = [], set()
        while code is not None and code in self.names and code not in seen:
            out.append(code)
            seen.add(code)
            code = self.parents.get(code)
        return out

    def descendants_and_self(self, code: str) -> list[str]:
        """下级地区 The region itself and everything below it (depth first)."""
        out, seen, stack = [], set(), [code]
        while stack:
            cur = stack.pop()
            if cur in seen:
                continue
            seen.add(cur)
            out.append(cur)
            stack.extend(self.children.get(cur, ()))
        return out

    def population(self, code: str) -> int | None:
        """常住人口 The region's own figure, or the sum of its children's when blank (indicators.md)."""
        own = self.own_population.get(code)
        if own is not None:
            return own
        kids = [self.population(c) for c in self.children.get(code, ())]
        kids = [k for k in kids if k is not None]
        return sum(kids) if kids else None

    def path_name(self, code: str) -> str:
        return "".join(self.names[c] for c in reversed(self.ancestors_and_self(code)))

    def name(self, code: str | None) -> str:
        """地区名称 The region's name (the code when unknown)."""
        return self.names.get(code, code) if code else ""

    def level(self, code: str) -> str | None:
        """级别 The region's level."""
        return self.levels.get(code)

    def parent(self, code: str) -> str | None:
        """上级 The region's parent code."""
        return self.parents.get(code)

    def township_of(self, code: str) -> str | None:
        """所属乡镇 The township a village (or the township itself) belongs to."""
        for current in self.ancestors_and_self(code):
            if self.levels.get(current) == RegionLevel.TOWNSHIP.value:
                return current
        return None

    def townships_under(self, code: str) -> list[str]:
        """下辖乡镇 Township codes at or below a region."""
        return sorted(c for c in self.descendants_and_self(code) if self.levels.get(c) == RegionLevel.TOWNSHIP.value)


class LiveRegionTree:
    """行政区划树（缓存） The region tree of a long-lived process: loaded on first use (or ``load()``),
    reloaded in the background once it is older than ``TTL_SECONDS`` (regions change rarely; the
    current tree answers meanwhile, so no caller — a web request on the event loop — waits for the
    database), and reloaded on next use after ``invalidate()``."""

    TTL_SECONDS = 300.0

    def __init__(self, engine):
        self.engine = engine
        self._lock = threading.Lock()
        self._loaded_at: float | None = None  # never loaded (not 0.0: monotonic time starts near 0 at boot)
        self._tree = RegionTree({}, {}, {}, {})
        self._descendants: dict[str, tuple[RegionTree, frozenset[str]]] = {}
        self._generation = 0  # bumped by invalidate(): a background reload begun before it is dropped
        self._reloading = False

    def _fresh(self) -> RegionTree:
        with self._lock:
            if self._loaded_at is None:
                with self.engine.connect() as conn:
                    self._install(RegionTree.load(conn))
            elif time.monotonic() - self._loaded_at > self.TTL_SECONDS and not self._reloading:
                self._reloading = True
                threading.Thread(target=self._reload, args=(self._generation,), name="region-tree-reload",
                                 daemon=True).start()
            return self._tree

    def _install(self, tree: RegionTree) -> None:  # under the lock
        self._tree = tree
        self._descendants = {}
        self._loaded_at = time.monotonic()

    def _reload(self, generation: int) -> None:
        """The background reload: the new tree replaces the current one unless invalidate() came
        meanwhile; on a database error the current tree stays and the next use after the TTL tries again."""
        try:
            with self.engine.connect() as conn:
                tree = RegionTree.load(conn)
            with self._lock:
                if generation == self._generation:
                    self._install(tree)
        except Exception:  # the database may be away: keep serving the current tree
            log.warning("region tree reload failed; the current tree stays", exc_info=True)
        finally:
            self._reloading = False

    def load(self) -> None:
        """加载 Load the tree now if it never was (a web worker does at start-up, off the event loop)."""
        self._fresh()

    def invalidate(self) -> None:
        """刷新 Reload the tree on next use."""
        with self._lock:
            self._loaded_at = None
            self._generation += 1

    def descendants(self, code: str) -> frozenset[str]:
        """下级地区 The region itself and everything below it (memoised until the tree reloads)."""
        tree = self._fresh()
        hit = self._descendants.get(code)
        if hit is not None and hit[0] is tree:  # computed on the current tree
            return hit[1]
        result = frozenset(tree.descendants_and_self(code))
        self._descendants[code] = (tree, result)
        return result

    def name(self, code: str | None) -> str:
        """地区名称 The region's name (the code when unknown)."""
        return self._fresh().name(code)

    def level(self, code: str) -> str | None:
        """级别 The region's level."""
        return self._fresh().level(code)

    def parent(self, code: str) -> str | None:
        """上级 The region's parent code."""
        return self._fresh().parent(code)

    def township_of(self, code: str) -> str | None:
        """所属乡镇 The township a village (or the township itself) belongs to."""
        return self._fresh().township_of(code)

    def townships_under(self, code: str) -> list[str]:
        """下辖乡镇 Township codes at or below a region."""
        return self._fresh().townships_under(code)


# ------------------------------------------------------------------------------------ SQL twins


def region_subtree(code: str) -> sa.CTE:
    """The region ``code`` and every region below it (recursive CTE, any depth)."""
    r = Region.__table__
    tree = sa.select(r.c.code).where(r.c.code == code).cte("subtree", recursive=True)
    child = r.alias("child")
    return tree.union_all(sa.select(child.c.code).where(child.c.parent_code == tree.c.code))


def villages_under(code: str, level: str | None = None):
    """下级地区 The villages at or below region ``code`` as a subquery (county → township → village,
    RegionLevel). Shaped by the region's level so the planner's row estimate is right (an OR over
    levels makes PostgreSQL scan every patient). ``code`` may be an SQL expression (a bind parameter)."""
    if level == RegionLevel.VILLAGE.value:
        return sa.select(code if isinstance(code, sa.ColumnElement) else sa.literal(code))
    if level == RegionLevel.TOWNSHIP.value:
        return sa.select(Region.code).where(Region.parent_code == code)
    child = aliased(Region)
    if level == RegionLevel.COUNTY.value:
        return sa.select(Region.code).where(Region.parent_code.in_(sa.select(child.code).where(child.parent_code == code)))
    return sa.select(Region.code).where(sa.or_(
        Region.code == code,
        Region.parent_code == code,
        Region.parent_code.in_(sa.select(child.code).where(child.parent_code == code)),
    ))


def region_cascade_text(village: str, township: str, code: str) -> str:
    """The village ``village`` (a ``region`` alias; ``township`` its LEFT JOINed parent) lies at or
    below region ``code`` (an SQL expression), as SQL text: the three-level cascade of ``villages_under``."""
    return f"({village}.code = {code} OR {village}.parent_code = {code} OR {township}.parent_code = {code})"
