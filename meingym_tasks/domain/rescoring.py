"""Set-based rescoring of actions, the database half of the update-all-actions job.

The job walks the action ids in ranges (:func:`action_id_bounds`, then
:func:`rescore_actions` per range) so each transaction stays short, and every
range is one ``UPDATE`` whose score is computed by the database itself from
:func:`meingym_tasks.domain.scoring.score_expression`: no row travels through Python,
and the result equals :func:`meingym_tasks.domain.scoring.score` to the cent.
Rescoring is idempotent: running a range twice stores the same scores.
"""

from __future__ import annotations

from datetime import datetime

import peewee

from meingym_tasks.domain import scoring
from meingym_tasks.domain.models import Action, Exercise, to_utc_naive, write_transaction

__all__ = ["action_id_bounds", "action_score_expression", "rescore_actions"]


def action_id_bounds() -> tuple[int, int] | None:
    """The smallest and largest action id, or ``None`` when there are no actions.

    Ids may have gaps; ranges between the bounds are cheap primary-key scans either way.
    """
    # Two queries: SQLite reads min() or max() from the end of the index only when a query has
    # one of them; MIN and MAX together scanned every action (85 ms of 1M before each run).
    low = Action.select(peewee.fn.MIN(Action.id)).scalar()
    if low is None:
        return None
    high = Action.select(peewee.fn.MAX(Action.id)).scalar()
    if high is None:  # emptied between the two queries
        return None
    return int(low), int(high)


def action_score_expression() -> peewee.Node:
    """The score of the outer ``action`` row, as a correlated subquery on its exercise.

    A correlated subquery rather than ``UPDATE ... FROM`` because it reads the same on
    SQLite and PostgreSQL and peewee renders the outer columns unaliased.
    """
    columns: dict[str, peewee.Node] = {name: getattr(Action, name) for name in scoring.INPUTS if name != "difficulty"}
    columns["difficulty"] = Exercise.difficulty
    return Exercise.select(scoring.score_expression(columns, Exercise.kind)).where(Exercise.id == Action.exercise)


def rescore_actions(first_id: int, last_id: int, now: datetime) -> int:
    """Score every action with ``first_id <= id <= last_id`` in one UPDATE; returns the row count.

    ``scored_at`` becomes ``now`` (stored as naive UTC). Actions lacking a number
    their exercise's kind needs get a NULL score.
    """
    query = Action.update(score=action_score_expression(), scored_at=to_utc_naive(now)).where(
        Action.id.between(first_id, last_id)
    )
    with write_transaction():
        return int(query.execute())
