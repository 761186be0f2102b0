"""What the flows share while they run, and nothing the stages need.

- `prefect_server`: the Prefect API a command-line run talks to (a temporary server started with Ctrl-C blocked),
  and `flow_session`, which also takes over Ctrl-C for the run;
- `interruption`: Ctrl-C as the flows handle it (the first lets the running DVC command stop by itself);
- `dvc_runner`: DVC commands streamed into the run log, the stages' environment, transient-error retries;
- `stage_watch`: the stages' progress events turned into log lines and a Prefect progress artifact per stage;
- `checkout`: one pipeline run per checkout at a time;
- `exits`: how a flow command ends, as one exit code with one meaning per code.

May import `bayling` (any package) and Prefect; never a flow module (`flows.retrain`, `flows.reproduce`,
`flows.serve`), which import this package. Nothing in `bayling/` imports it.
"""
