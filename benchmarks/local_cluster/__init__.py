"""Real engines on this machine, on free localhost ports: Beam's own portable job service and
SDK worker pool, and a TF_CONFIG cluster of Trainer worker processes. The scale-out benchmark
and the e2e tests run the pipeline's cluster paths against them."""
