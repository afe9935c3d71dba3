# Warm pools (README "Warm pools"): which pool-empty alarms the module creates and what the
# dashboard searches for (observability.tf). Pure expressions of the variables, local.prefix and
# local.metrics_namespace: tests/deploy/test_pool_terraform.py renders this file offline.

locals {
  # One pool-empty alarm per template and kind of member its pool ever wants (in any window).
  pool_alarms = merge([for t in var.runner_templates : {
    for kind in ["hot", "stopped"] : "${t.name}-${kind}" => { template = t.name, kind = kind }
    if t.pool == null ? false : max(concat(
      [t.pool[kind]], [for w in try(t.pool.schedule.windows, []) : coalesce(w[kind], t.pool[kind])]
    )...) > 0
  }]...)
  # The dimension sets the Lambdas emit these metrics with (observability.observe/count).
  pool_search = {
    for name, dims in {
      QueueToRunnerLatency = "path,service,template"
      PoolSize             = "kind,service,template"
      PoolDeficit          = "kind,service,template"
      PoolFillFailed       = "reason,service,template"
    } : name => "{${local.metrics_namespace},${dims}} MetricName=\"${name}\""
  }
}
