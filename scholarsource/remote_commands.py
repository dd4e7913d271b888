"""The CLI's remote commands (`submit`, `status`, `cancel`, `jobs`, `retry`, `dlq`, `cancel-jobs`,
`schedules`, `queues`): talk to a running server over HTTP."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn
from urllib.parse import quote

import click

from scholarsource.client import Client, ClientError, Job, JobPage, JobState, RetryPolicy
from scholarsource.exitcodes import EXIT_FAILURE

DEFAULT_URL = "http://127.0.0.1:8000"
# A person at a terminal would rather see "cannot reach" within a second and rerun; a 503 or
# 429 still waits what its Retry-After says.
CLI_RETRIES = RetryPolicy(retries=2, backoff=0.2)


def client_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--url, --api-key and --json, shared by every client command."""
    fn = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)
    # No default shown and never echoed: the key is a secret.
    fn = click.option("--api-key", envvar="SCHOLARSOURCE_API_KEY", metavar="KEY",
                      help="API key, sent as a bearer token (also SCHOLARSOURCE_API_KEY, "
                           "which keeps it out of the shell history).")(fn)
    return click.option("--url", envvar="SCHOLARSOURCE_URL", default=DEFAULT_URL,
                        show_default=True, help="Server URL (also SCHOLARSOURCE_URL).")(fn)


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_FAILURE)


@contextmanager
def _remote(url: str, api_key: str | None) -> Iterator[Client]:
    """The client for one command; any error it raises ends the command with EXIT_FAILURE
    and one line: the server's code and message, or why no answer came."""
    try:
        client = Client(url, api_key, retry_policy=CLI_RETRIES)
    except ValueError as exc:  # a malformed key: the message never holds it
        _fail(str(exc))
    try:
        with client:
            yield client
    except ClientError as exc:
        _fail(str(exc))


def _request(url: str, api_key: str | None, method: str, path: str) -> Any:
    """One call to a route the client has no method for (schedules, queues)."""
    with _remote(url, api_key) as client:
        return client.request(method, path)


def _parse_param(text: str) -> tuple[str, Any]:
    """key=value; the value is read as JSON when it parses (numbers, true, lists), else text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not key=value")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _show(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(job, indent=2))
        return
    line = f"{job['id']}  {job['task']:<12} {job['status']:<10} attempts {job['attempts']}"
    if job.get("progress") is not None and job["status"] == "running":
        line += f"  {job['progress']:.0%}"
    if job.get("cancel_requested") and job["status"] == "running":
        line += "  cancel requested"
    click.echo(line)
    if job.get("error"):
        click.echo(f"  error: {job['error']}")
    if job.get("run_at") is not None:  # scheduled or retrying: when it may start
        click.echo(f"  {'next attempt' if job['attempts'] else 'starts'} in "
                   f"{max(job['run_at'] - time.time(), 0):.1f}s")
    if job["status"] == "succeeded" and job.get("result") is not None:
        click.echo(f"  result: {json.dumps(job['result'])}")


def _exit_for(job: Job) -> None:
    if job.final and job.status is not JobState.SUCCEEDED:
        sys.exit(EXIT_FAILURE)


def _run_at(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """--run-at: epoch seconds as a number, anything else as the ISO text the server reads."""
    try:
        return None if value is None else float(value)
    except ValueError:
        return value


@click.command()
@click.argument("task")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A task parameter; repeat for more.")
@click.option("--queue", help="Queue name (default: the task's).")
@click.option("--priority", type=int, help="-1000 to 1000; higher runs first.")
@click.option("--max-attempts", type=int,
              help="Attempts before the job is dead (default: the task's, then the config's).")
@click.option("--timeout", type=float, help="Seconds an attempt may run (default: the task's).")
@click.option("--memory-limit", metavar="SIZE",
              help="Most RSS the job may hold: bytes, or like 512MB (default: the task's).")
@click.option("--backoff-base", type=float,
              help="Seconds before the first retry; doubles each time (default: the task's, "
                   "then the config's).")
@click.option("--backoff-max", type=float, help="Longest wait between attempts, seconds.")
@click.option("--cache-ttl", type=float,
              help="Seconds a success of the same task and params answers this submit "
                   "instead of a new run (default: the task's).")
@click.option("--bypass-cache", is_flag=True, default=None,
              help="Run anew even if a cached result exists; the new one is cached.")
@click.option("--unique/--no-unique", default=None,
              help="Get the job of the same task and params that is scheduled, queued, running or "
                   "retrying, if any, instead of a new one (default: the task's).")
@click.option("--delay", type=float, help="Start no sooner than this many seconds from now.")
@click.option("--run-at", callback=_run_at, metavar="TIME",
              help="Start no sooner than TIME: epoch seconds, or ISO 8601 with a zone "
                   "(2030-01-01T09:00:00Z).")
@click.option("--concurrency-key",
              help="At most --concurrency-limit of your jobs with this key (a user id, say) "
                   "run at once.")
@click.option("--concurrency-limit", type=int,
              help="How many jobs with the key may run at once (default: the task's, else 1).")
@click.option("--depends-on", multiple=True, metavar="JOB_ID",
              callback=lambda ctx, param, value: list(value) or None,
              help="Wait until this job of yours has succeeded; repeat for more.")
@click.option("--on-parent-failure", type=click.Choice(["cancel", "run"]),
              help="A parent that ends dead or cancelled cancels this job (cancel, the "
                   "default) or counts as done (run).")
@click.option("--wait", is_flag=True, help="Wait until the job ends; exit 1 unless it succeeded.")
@click.option("--idempotency-key", "key",
              help="Submitting again with the same key gives back the same job.")
@client_options
def submit(task: str, params: tuple[str, ...], wait: bool, key: str | None, url: str,
           api_key: str | None, as_json: bool, **fields: Any) -> None:
    """Submit TASK and print the job. Options left out take the task's defaults."""
    with _remote(url, api_key) as client:
        job = client.submit(task, dict(_parse_param(p) for p in params), idempotency_key=key,
                            **fields)
        if wait:
            job = client.wait(job.id)
    _show(job.raw, as_json)
    if wait:
        _exit_for(job)


@click.command()
@click.argument("job_id")
@client_options
def status(job_id: str, url: str, api_key: str | None, as_json: bool) -> None:
    """Print one job."""
    with _remote(url, api_key) as client:
        _show(client.get(job_id).raw, as_json)


@click.command()
@click.argument("job_id")
@client_options
def cancel(job_id: str, url: str, api_key: str | None, as_json: bool) -> None:
    """Cancel a queued job, or ask a running one to stop."""
    with _remote(url, api_key) as client:
        job = client.cancel(job_id).raw
    _show(job, as_json)
    if not as_json and job["status"] == "running" and job.get("cancel_requested"):
        click.echo("  cancel requested: the task sees ctx.cancel_requested and should stop; if "
                   "it has not ended within the server's cancel_grace (10 s by default), its "
                   "process is killed. Either way the job ends cancelled "
                   f"(scholarsource status {job['id']}).")


@click.command()
@click.option("--status", "status_", help="Only jobs in this state.")
@click.option("--task", help="Only jobs of this task.")
@click.option("--queue", help="Only jobs in this queue.")
@click.option("--schedule", help="Only jobs this schedule made.")
@click.option("--limit", type=int, default=50, show_default=True)
@client_options
def jobs(status_: str | None, task: str | None, queue: str | None, schedule: str | None,
         limit: int, url: str, api_key: str | None, as_json: bool) -> None:
    """List jobs, newest first."""
    with _remote(url, api_key) as client:
        page = client.page(None, limit, status=status_, task=task, queue=queue,
                           schedule=schedule)
    _list(_page_json(page), as_json)


def _page_json(page: JobPage) -> dict[str, Any]:
    """A page as the server sent it."""
    return {"jobs": [job.raw for job in page.jobs], "next_cursor": page.next_cursor}


def _list(answer: dict[str, Any], as_json: bool, key: str = "jobs",
          show: Callable[[dict[str, Any], bool], None] | None = None) -> None:
    """An answer that lists `key` (jobs, schedules): as JSON, or one line each."""
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    for item in answer[key]:
        (show or _show)(item, False)
    if not answer[key]:
        click.echo(f"no {key}")


@click.command()
@click.argument("job_id")
@client_options
def retry(job_id: str, url: str, api_key: str | None, as_json: bool) -> None:
    """Re-queue a retrying, dead or cancelled job with fresh attempts."""
    with _remote(url, api_key) as client:
        _show(client.retry(job_id).raw, as_json)


@click.group()
def dlq() -> None:
    """The dead letters: jobs that used up their attempts."""


@dlq.command("list")
@click.option("--limit", type=int, default=50, show_default=True)
@client_options
def dlq_list(limit: int, url: str, api_key: str | None, as_json: bool) -> None:
    """List dead jobs, newest first."""
    with _remote(url, api_key) as client:
        page = client.page(None, limit, status="dead")
    _list(_page_json(page), as_json)


@dlq.command("retry")
@click.argument("job_id", required=False)
@click.option("--all", "every", is_flag=True, help="Re-queue every dead job.")
@client_options
def dlq_retry(job_id: str | None, every: bool, url: str, api_key: str | None,
              as_json: bool) -> None:
    """Re-queue one dead job (JOB_ID) or all of them (--all)."""
    if every == (job_id is not None):
        raise click.UsageError("give either a JOB_ID or --all")
    with _remote(url, api_key) as client:
        if job_id is not None:
            _show(client.retry(job_id).raw, as_json)
            return
        answer = client.retry_dead()
    click.echo(json.dumps(answer) if as_json else f"re-queued {answer['retried']} job(s)")


@dlq.command("purge")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@client_options
def dlq_purge(yes: bool, url: str, api_key: str | None, as_json: bool) -> None:
    """Delete every dead job and its history."""
    if not yes:
        click.confirm("delete every dead job?", abort=True)
    with _remote(url, api_key) as client:
        answer = client.purge_dead()
    click.echo(json.dumps(answer) if as_json else f"purged {answer['purged']} job(s)")


@click.command("cancel-jobs")
@click.option("--status", "status_",
              help="Only jobs in this state (scheduled, queued, retrying or running).")
@click.option("--task", help="Only jobs of this task.")
@click.option("--queue", help="Only jobs in this queue.")
@click.option("--all", "every", is_flag=True,
              help="Every job not yet final, if no filter is given.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@client_options
def cancel_jobs(status_: str | None, task: str | None, queue: str | None, every: bool,
                yes: bool, url: str, api_key: str | None, as_json: bool) -> None:
    """Cancel many jobs: waiting and queued ones at once, running ones asked to stop."""
    filters = {k: v for k, v in (("status", status_), ("task", task), ("queue", queue))
               if v is not None}
    if not filters and not every:
        raise click.UsageError("name the jobs with --status, --task or --queue, or give --all")
    if not yes:
        which = " and ".join(f"{name} {value}" for name, value in filters.items())
        click.confirm(f"cancel every scheduled, queued, retrying and running job"
                      f"{f' with {which}' if which else ''}?", abort=True)
    with _remote(url, api_key) as client:
        answer = client.cancel_jobs(every=every, **filters)
    click.echo(json.dumps(answer) if as_json else
               f"cancelled {answer['cancelled']} job(s), asked {answer['cancel_requested']} "
               f"running job(s) to stop")


def _when(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _show_schedule(schedule: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(schedule, indent=2))
        return
    timing = schedule["cron"] or f"every {schedule['every']:g}s"
    state = "paused" if schedule["paused"] else f"next {_when(schedule['next_fire'])}"
    click.echo(f"{schedule['name']:<20} {schedule['task']:<12} {timing:<18} {state}  "
               f"last {_when(schedule['last_fire'])} {schedule['last_job_id'] or ''} "
               f"{schedule['last_status'] or ''}".rstrip())


@click.group(invoke_without_command=True)
@client_options
@click.pass_context
def schedules(ctx: click.Context, url: str, api_key: str | None, as_json: bool) -> None:
    """Periodic jobs: list them (the default), or trigger, pause or resume one."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(schedules_list, url=url, api_key=api_key, as_json=as_json)


@schedules.command("list")
@client_options
def schedules_list(url: str, api_key: str | None, as_json: bool) -> None:
    """Each schedule with its next fire, last fire, latest job and its status."""
    _list(_request(url, api_key, "GET", "/api/schedules"), as_json, "schedules", _show_schedule)


@schedules.command("trigger")
@click.argument("name")
@client_options
def schedules_trigger(name: str, url: str, api_key: str | None, as_json: bool) -> None:
    """Run schedule NAME's job now; its fire times keep their own jobs."""
    _show(_request(url, api_key, "POST", f"/api/schedules/{quote(name, safe='')}/trigger"), as_json)


@schedules.command("pause")
@click.argument("name")
@client_options
def schedules_pause(name: str, url: str, api_key: str | None, as_json: bool) -> None:
    """Pause schedule NAME: no job for its fires until it is resumed (kept across restarts)."""
    _show_schedule(_request(url, api_key, "POST",
                            f"/api/schedules/{quote(name, safe='')}/pause"), as_json)


@schedules.command("resume")
@click.argument("name")
@client_options
def schedules_resume(name: str, url: str, api_key: str | None, as_json: bool) -> None:
    """Resume schedule NAME from now: the fires it missed while paused do not run."""
    _show_schedule(_request(url, api_key, "POST",
                            f"/api/schedules/{quote(name, safe='')}/resume"), as_json)


@click.group(invoke_without_command=True)
@client_options
@click.pass_context
def queues(ctx: click.Context, url: str, api_key: str | None, as_json: bool) -> None:
    """The queues: depth, limits, pauses and rate limits; pause or resume one."""
    if ctx.invoked_subcommand is not None:
        return
    answer = _request(url, api_key, "GET", "/api/queues")
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(f"{'queue':<16} {'queued':>7} {'running':>7} {'max':>4} {'rsvd':>4} "
               f"{'jobs/s':>7}  state")
    for q in answer["queues"]:
        cap = "-" if q["max_running"] is None else q["max_running"]
        state = "paused" if q["paused"] else "throttled" if q["throttled"] else ""
        click.echo(f"{q['name']:<16} {q['queued']:>7} {q['running']:>7} {cap:>4} "
                   f"{q['reserved']:>4} {q['throughput']:>7}  {state}")
    for r in answer["rates"]:
        click.echo(f"rate {r['task']}: {r['rate_limit']}, {r['started_in_window']} started "
                   f"in the window, {r['queued']} queued{' (throttled)' if r['throttled'] else ''}")


def _queue_action(url: str, api_key: str | None, name: str, verb: str,
                  as_json: bool) -> None:
    answer = _request(url, api_key, "POST", f"/api/queues/{quote(name, safe='')}/{verb}")
    click.echo(json.dumps(answer) if as_json else f"queue {name} {verb}d")


@queues.command("pause")
@click.argument("name")
@client_options
def queues_pause(name: str, url: str, api_key: str | None, as_json: bool) -> None:
    """Pause queue NAME: its queued jobs stay queued, running ones finish."""
    _queue_action(url, api_key, name, "pause", as_json)


@queues.command("resume")
@click.argument("name")
@client_options
def queues_resume(name: str, url: str, api_key: str | None, as_json: bool) -> None:
    """Resume queue NAME: its queued jobs may start again."""
    _queue_action(url, api_key, name, "resume", as_json)


client_commands = [submit, status, cancel, jobs, retry, dlq, cancel_jobs, queues,
                   schedules]
