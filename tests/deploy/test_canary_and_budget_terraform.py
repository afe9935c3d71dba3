"""terraform/ against the canary rollout and the budget guard: names, triggers and grants the code
relies on (jitrunners.canary, jitrunners.guardrail, jitrunners.budget, jitrunners_cli.rollout)."""

from __future__ import annotations

import re

from jitrunners import budget, canary, guardrail
from tests.deploy import rendered
from tests.deploy import tfmodel as tf

PREFIX = rendered.PREFIX
ACCOUNT, REGION = rendered.ACCOUNT, rendered.REGION


def _alias_ref(text: str) -> bool:
    return "aws_lambda_alias.live[" in text


def test_every_function_is_published_and_has_the_alias_the_rollout_moves() -> None:
    function = tf.blocks("resource", "aws_lambda_function")["this"]
    assert function["publish"] is True
    alias = tf.blocks("resource", "aws_lambda_alias")["live"]
    assert alias["for_each"] == "${local.functions}"
    assert tf.locals_()["live_alias"] == canary.ALIAS
    assert alias["function_version"] == "${aws_lambda_function.this[each.key].version}"
    # The rollout owns the version, the weights and the description once the alias exists.
    ignored = alias["lifecycle"][0]["ignore_changes"]
    assert set(ignored) == {"function_version", "routing_config", "description"}


def test_every_trigger_invokes_the_alias_never_latest() -> None:
    integration = tf.blocks("resource", "aws_apigatewayv2_integration")["webhook"]
    assert integration["integration_uri"] == '${aws_lambda_alias.live["webhook"].invoke_arn}'
    mappings = tf.blocks("resource", "aws_lambda_event_source_mapping")
    assert mappings["scale_up"]["function_name"] == '${aws_lambda_alias.live["scale-up"].arn}'
    assert mappings["scale_down"]["function_name"] == '${aws_lambda_alias.live["scale-down"].arn}'
    target = tf.blocks("resource", "aws_cloudwatch_event_target")["this"]
    # Rules target the teardown queue (read by scale-down's mapping above) or a function's alias.
    assert target["arn"].endswith(": aws_lambda_alias.live[each.value.target].arn}")
    subscription = tf.blocks("resource", "aws_sns_topic_subscription")["budget_guard"]
    assert subscription["endpoint"] == '${aws_lambda_alias.live["budget-guard"].arn}'
    invoke_config = tf.blocks("resource", "aws_lambda_function_event_invoke_config")["async"]
    assert _alias_ref(invoke_config["qualifier"])
    # A permission without the alias qualifier would let the trigger invoke nothing (the alias is
    # a resource of its own for Lambda's resource policy).
    for name, permission in tf.blocks("resource", "aws_lambda_permission").items():
        assert _alias_ref(permission.get("qualifier", "")), name
    # Nothing points a trigger at a function's unqualified ARN.
    for path in tf.tf_files():
        if path.parent == tf.TERRAFORM:
            text = path.read_text()
            assert not re.search(r"aws_lambda_function\.this\[[^\]]+\]\.(invoke_)?arn", text), path


def test_the_kill_switch_follows_the_variable_or_the_runtime_record() -> None:
    """An apply keeps a kill switch the budget guard or an operator engaged (it reads the
    record guardrail.py writes), and the setting a lift restores is the module's own."""
    locals_ = tf.locals_()
    assert "var.kill_switch ||" in locals_["kill_switch"]
    assert "data.aws_ssm_parameters_by_path.guard.names" in locals_["kill_switch"]
    data = tf.blocks("data", "aws_ssm_parameters_by_path")["guard"]
    assert data["path"] == "${local.guard_path}"
    path = locals_["guard_path"].replace("${local.prefix}", PREFIX)
    assert path == guardrail.guard_path(PREFIX)
    record = locals_["kill_switch_record_name"].replace("${local.guard_path}", path)
    assert record == guardrail.record_name(PREFIX, guardrail.KILL_SWITCH)
    setting = tf.blocks("resource", "aws_ssm_parameter")["kill_switch"]
    name = locals_["kill_switch_setting_name"].replace("${local.prefix}", PREFIX)
    assert name == guardrail.terraform_setting_name(PREFIX)
    assert setting["name"] == "${local.kill_switch_setting_name}"
    # The keys of the setting are the ones TerraformSetting reads, for the stopped functions.
    keys = set(re.findall(r'"?([\w-]+)"?\s*=', setting["value"]))
    assert {"kill_switch", "reserved_concurrency", *guardrail.STOPPED_FUNCTIONS} <= keys
    assert locals_["kill_switch_functions"] == list(guardrail.STOPPED_FUNCTIONS)


def test_budgets_filter_on_our_tag_and_carry_the_names_the_guard_accepts() -> None:
    budgets = tf.blocks("resource", "aws_budgets_budget")["this"]
    assert budgets["name"] == "${local.prefix}-${each.key}"
    kinds = set(re.findall(r"\b(monthly|daily)\s*=", tf.locals_()["budgets"]))
    assert {f"{PREFIX}-{k}" for k in kinds} == budget.budget_names(PREFIX)
    assert budgets["cost_filter"][0]["name"] == "TagKeyValue"
    assert tf.locals_()["budget_tag_filter"] == (
        '${format("user:%s$%s", "jitrunners:prefix", local.prefix)}'
    )
    notification = budgets["notification"][0]
    assert notification["notification_type"] == "ACTUAL"
    assert notification["subscriber_sns_topic_arns"] == ["${aws_sns_topic.budget[0].arn}"]
    topic = tf.blocks("resource", "aws_sns_topic")["budget"]
    assert topic["kms_master_key_id"] == "${local.kms_key_arn}"
    assert topic["name"] == "${local.budget_topic_name}"


def test_the_budget_topic_admits_this_accounts_budgets_and_the_key_lets_them_encrypt() -> None:
    docs = rendered.documents()
    [allow] = [s for s in rendered.statements(docs.budget_topic_policy) if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "budgets.amazonaws.com"}
    assert allow["Resource"] == [f"arn:aws:sns:{REGION}:{ACCOUNT}:{PREFIX}-budget"]
    assert rendered.conditions(allow)["aws:SourceAccount"] == [ACCOUNT]
    key = {s["Sid"]: s for s in rendered.statements(docs.kms_key_policy)}
    budgets_key = key["BudgetsPublishToEncryptedTopic"]
    assert budgets_key["Principal"] == {"Service": "budgets.amazonaws.com"}
    assert rendered.conditions(budgets_key)["aws:SourceAccount"] == [ACCOUNT]


def test_the_guard_may_stop_only_our_intake_and_write_only_its_records() -> None:
    policy = rendered.documents().function_policies["budget-guard"]
    by_action = {a: st for st in rendered.statements(policy) for a in st["Action"]}
    fn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function"
    assert by_action["lambda:PutFunctionConcurrency"]["Resource"] == [
        f"{fn}:{guardrail.function_name(PREFIX, k)}" for k in guardrail.STOPPED_FUNCTIONS
    ]
    update = by_action["lambda:UpdateEventSourceMapping"]
    assert update["Resource"] == [f"arn:aws:lambda:{REGION}:{ACCOUNT}:event-source-mapping:*"]
    assert rendered.conditions(update)["aws:ResourceTag/jitrunners:prefix"] == [PREFIX]
    records = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{guardrail.guard_path(PREFIX)}/*"
    for action in ("ssm:GetParameter", "ssm:PutParameter"):
        assert by_action[action]["Resource"] == [records]
    # Lifting is an operator's: the guard cannot restore concurrency or delete a record.
    assert "lambda:DeleteFunctionConcurrency" not in by_action
    assert "ssm:DeleteParameter" not in by_action
    env = tf.locals_()["environment"]
    assert env["BUDGET_ACTION"] == "${var.budget_action}"
    validation = tf.variables()["budget_action"]["validation"][0]["condition"]
    from jitrunners.config import BUDGET_ACTIONS

    assert set(re.findall(r'"([a-z-]+)"', validation)) == set(BUDGET_ACTIONS)


def test_canary_health_metrics_name_functions_the_module_deploys() -> None:
    assert set(canary.FAILURE_METRICS) == set(tf.locals_()["functions"])
    emitted = set()
    for path in (tf.ROOT / "lambdas").rglob("*.py"):
        emitted |= set(re.findall(r'\bcount\(\s*"([A-Za-z]+)"', path.read_text()))
    assert emitted >= canary.VERSIONED_METRICS, "a watched metric the code never emits"
    # The rollout reads our metrics in the namespace `<prefix>` with service `<prefix>`.
    env = tf.locals_()["environment"]
    assert (
        env["POWERTOOLS_METRICS_NAMESPACE"] == env["POWERTOOLS_SERVICE_NAME"] == "${local.prefix}"
    )
