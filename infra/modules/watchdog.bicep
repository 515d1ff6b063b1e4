// The watchdog: an Azure Monitor log search alert that runs outside the app. The monitor posts
// its alerts itself, so it cannot report its own death (not indexed, crashing, timer never
// firing, every tick failing). This rule does, from the app's telemetry: it fires when no tick
// has succeeded for three schedule periods, and e-mails the action group when one is given.

param location string
param tags object
param ruleName string
param actionGroupName string

@description('The telemetry workspace behind Application Insights (monitoring.bicep).')
param logAnalyticsName string

@minValue(1)
@maxValue(15)
@description('Minutes between two ticks of the monitor schedule.')
param scheduleMinutes int

@description('Who gets the e-mail. Empty = no action group: the alert still fires and shows in the portal.')
param email string

// Window = three schedule periods. Log search alerts accept only some window lengths (5, 10, 15,
// 30, 45 minutes, then hours), so the window is the shortest of them that holds three periods:
// exactly three for 5, 10 and 15 minutes, never fewer than three for any period up to 15.
var windowMinutes = first(filter([5, 10, 15, 30, 45], minutes => minutes >= 3 * scheduleMinutes))

// Evaluated every 5 minutes, which no window here is shorter than. The rule fires at the first
// evaluation whose window no longer holds the last successful tick: from that tick's log line to
// the fired alert takes at least the window and less than the window plus 5 minutes (15 to 20
// for the default schedule), then the e-mail's own delivery time.
var evaluationMinutes = 5

// What counts as a successful tick, and why it is read from traces and not from requests.
//
// run_tick (monitors/tick.py) logs one JSON line through the Python logger at the end of a tick
// (TickReport.summary): {"event": "tick", ..., "query_errors": [...], "stood_back": null or a
// reason}. The Functions host writes it to AppTraces with the line as Message. A tick succeeded
// when its line says it did not stand back and no workspace query failed. Every failure leaves
// no such line: a dead or unindexed app and a timer that never fires log nothing; a tick that
// raises skips the line (it is logged after the steps); a tick killed at the function timeout
// never gets there; a failed query or a lost lease is in the line itself. So "fewer than one
// such line in the window" covers both "no tick ran" and "ticks keep failing".
//
// AppRequests (one row per execution, with Success) cannot say the same: host.json sets
// Host.Results to Error, so the host records only failed executions there; a rule that waited
// for successful requests would fire forever, and failed executions already leave no tick line.
//
// `has "tick"` is a cheap term filter before parsing; parse_json of a line that is not JSON
// yields no `event`, so other traces never count. A missing query_errors is not an empty list
// (array_length is null), so a changed log format fails towards alerting.
var successfulTicks = '''
AppTraces
| where Message has "tick"
| extend report = parse_json(Message)
| where tostring(report.event) == "tick"
| where isempty(tostring(report.stood_back)) and array_length(report.query_errors) == 0
'''

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: logAnalyticsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(email)) {
  name: actionGroupName
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'mfamon-wd'
    enabled: true
    emailReceivers: [
      {
        name: 'watchdog-email'
        emailAddress: email
        useCommonAlertSchema: true
      }
    ]
  }
}

resource rule 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: ruleName
  location: location
  tags: tags
  kind: 'LogAlert'
  // The rule queries as its own identity: App Insights and its workspace accept no keys, and
  // without an identity a rule runs with the rights of whoever last edited it.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    displayName: 'MFA monitor watchdog: no successful tick'
    description: 'No monitor tick succeeded in ${windowMinutes} minutes (at least three ticks of ${scheduleMinutes} minutes): the monitor is down or every tick fails, and it cannot post that to Teams itself. docs/deploy.md, Troubleshooting, says what to check.'
    // 1 = Error: the security monitor is blind, but nothing is known to be compromised.
    severity: 1
    enabled: true
    scopes: [
      workspace.id
    ]
    evaluationFrequency: 'PT${evaluationMinutes}M'
    windowSize: 'PT${windowMinutes}M'
    criteria: {
      allOf: [
        {
          query: successfulTicks
          // Rows of the query in the window; no rows at all is a count of 0 (no dimensions).
          timeAggregation: 'Count'
          operator: 'LessThan'
          threshold: 1
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    // Stateful: one e-mail when it fires, one when ticks succeed again.
    autoMitigate: true
    // Creation-time validation runs the query once, and on a first `azd up` the workspace may
    // have no AppTraces table yet (the app has not logged), which can fail the deployment; the
    // flag exists for tables that appear later. tests/infra check the query against the
    // documented AppTraces columns instead.
    skipQueryValidation: true
    actions: {
      actionGroups: empty(email) ? [] : [
        actionGroup.id
      ]
    }
  }
}

// Read access for the rule's identity, in a module so the assignment is named after the
// identity's principal id (a module parameter is known when the deployment starts).
module ruleReader 'watchdog-reader.bicep' = {
  name: 'watchdog-reader'
  params: {
    workspaceName: workspace.name
    principalId: rule.identity.principalId
  }
}

output ruleName string = rule.name
