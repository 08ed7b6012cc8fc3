"""Scheduled jobs: expiry warnings (SMS and voice), points expiry, automatic redemption and
tier review.

- Job use cases (``expiry_warnings``, ``expire_points``, ``auto_redeem``, ``tier_review``) are
  pure: they take a unit of work, the programme rules, ``now`` and the jobs config, and work in
  steps (one batch each) so a run can be resumed where it stopped.
- ``runs`` claims a run once in the database (``job_runs``) and drives its steps.
- ``due`` says when each job's run is due; the Twisted services that act on it live with the
  other services: ``ops.scheduler`` fires each job at its local time and
  ``ivr.voice_warnings`` places the voice warnings through AMI.
- ``cli`` adds ``loyalty jobs list`` / ``loyalty jobs run NAME``.
"""
