{{/*
Template helpers. Every helper is namespaced `nightshift.` and takes the root context.
*/}}

{{/* The chart name (or nameOverride), truncated to a DNS label. */}}
{{- define "nightshift.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name: the release name followed by the chart name, unless the release name contains it
already. Truncated to 63 characters; names derived from it truncate it further.
*/}}
{{- define "nightshift.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* `<fullname>-<suffix>`, the full name shortened so that the result fits in 63 characters. */}}
{{- define "nightshift.suffixed" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
{{- printf "%s-%s" (include "nightshift.fullname" $root | trunc (int (sub 62 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "nightshift.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator's resources; never change them (selectors are immutable). */}}
{{- define "nightshift.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nightshift.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "nightshift.labels" -}}
helm.sh/chart: {{ include "nightshift.chart" . }}
{{ include "nightshift.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nightshift
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of the operator pods. */}}
{{- define "nightshift.podSelectorLabels" -}}
{{ include "nightshift.selectorLabels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "nightshift.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nightshift.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image: repository:tag, or repository@digest when a digest is set. */}}
{{- define "nightshift.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The operator's user name, as the API server sees its requests. */}}
{{- define "nightshift.serviceAccountUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "nightshift.serviceAccountName" .) }}
{{- end }}

{{/* The metrics port's name: https-metrics when served over TLS (metrics.secure). */}}
{{- define "nightshift.metrics.portName" -}}
{{- if .Values.metrics.secure }}https-metrics{{ else }}http-metrics{{ end }}
{{- end }}

{{/* The operator pods' PriorityClass: priorityClassName, else the chart's own, else none. */}}
{{- define "nightshift.priorityClassName" -}}
{{- if .Values.priorityClassName }}{{ .Values.priorityClassName }}
{{- else if .Values.priorityClass.create }}{{ include "nightshift.fullname" . }}
{{- end }}
{{- end }}

{{/* Name of the leader-election Lease (in the release namespace). */}}
{{- define "nightshift.leaseName" -}}
{{- include "nightshift.fullname" . }}
{{- end }}

{{/* The webhook's Service, Secret and cert-manager resources. */}}
{{- define "nightshift.webhook.serviceName" -}}
{{- include "nightshift.suffixed" (list . "webhook") }}
{{- end }}

{{- define "nightshift.webhook.secretName" -}}
{{- include "nightshift.suffixed" (list . "webhook-tls") }}
{{- end }}

{{- define "nightshift.webhook.certificateName" -}}
{{- include "nightshift.suffixed" (list . "webhook") }}
{{- end }}

{{- define "nightshift.webhook.caName" -}}
{{- include "nightshift.suffixed" (list . "webhook-ca") }}
{{- end }}

{{- define "nightshift.webhook.selfSignedIssuerName" -}}
{{- include "nightshift.suffixed" (list . "selfsigned") }}
{{- end }}

{{/* DNS names of the webhook Service, as the API server addresses it. */}}
{{- define "nightshift.webhook.dnsNames" -}}
{{- $service := include "nightshift.webhook.serviceName" . }}
{{- list (printf "%s.%s.svc" $service .Release.Namespace) (printf "%s.%s.svc.cluster.local" $service .Release.Namespace) | toJson }}
{{- end }}

{{/*
The webhook's CA and serving certificate when Helm generates them, as JSON {ca, crt, key}.

They are generated once per render and cached on the root context, so that the Secret and the
ValidatingWebhookConfiguration (two templates) agree. An existing Secret (from an earlier install)
is reused until its annotation nightshift.dev/renew-after (webhook.certRenewBeforeDays before it
expires) has passed, so upgrades neither rotate the certificate nor change the caBundle before
then. `helm template` cannot look the Secret up and generates fresh ones every time.
*/}}
{{- define "nightshift.webhook.tls" -}}
{{- if not (hasKey .Release "nightshiftWebhookTLS") }}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "nightshift.webhook.secretName" .) }}
{{- $tls := dict }}
{{- $days := int .Values.webhook.certValidityDays }}
{{- $renewAt := "" }}
{{- if and $secret $secret.metadata.annotations }}
{{- $renewAt = get $secret.metadata.annotations "nightshift.dev/renew-after" }}
{{- end }}
{{- $due := true }}
{{- if $renewAt }}
{{- $due = ge (now | unixEpoch | int64) (toDate "2006-01-02T15:04:05Z07:00" $renewAt | unixEpoch | int64) }}
{{- end }}
{{- if and $secret $secret.data (hasKey $secret.data "ca.crt") (hasKey $secret.data "tls.crt") (hasKey $secret.data "tls.key") (not $due) }}
{{- $tls = dict "ca" (index $secret.data "ca.crt" | b64dec) "crt" (index $secret.data "tls.crt" | b64dec) "key" (index $secret.data "tls.key" | b64dec) "renewAfter" $renewAt }}
{{- else }}
{{- $ca := genCA (printf "%s-webhook-ca" (include "nightshift.fullname" .)) $days }}
{{- $dnsNames := include "nightshift.webhook.dnsNames" . | fromJsonArray }}
{{- $cert := genSignedCert (first $dnsNames) nil $dnsNames $days $ca }}
{{- $keep := sub $days (int .Values.webhook.certRenewBeforeDays) | int }}
{{- $renewAfter := now | dateModify (printf "%dh" (mul (max $keep 1) 24)) | date "2006-01-02T15:04:05Z07:00" }}
{{- $tls = dict "ca" $ca.Cert "crt" $cert.Cert "key" $cert.Key "renewAfter" $renewAfter }}
{{- end }}
{{- $_ := set .Release "nightshiftWebhookTLS" $tls }}
{{- end }}
{{- get .Release "nightshiftWebhookTLS" | toJson }}
{{- end }}

{{/*
The operator's permissions on the resources it works with, in every namespace it watches.
Nothing else: no Secrets, no wildcards, no namespaces, no CRDs (kopf's resource and namespace
scanning is switched off; it only reads API discovery, which needs no grant).
*/}}
{{- define "nightshift.rbac.rules" -}}
# Watch the tasks (kopf lists and watches them); read one again when a status write finds it
# changed since the decision (optimistic concurrency).
- apiGroups: ["nightshift.dev"]
  resources: ["scheduledtasks"]
  verbs: ["get", "list", "watch"]
{{- if and (gt (int .Values.sharding.shards) 1) (ne .Values.sharding.filter "shardSelector") }}
# Shards selected by label: the holder of shard 0 labels each task with its bucket.
- apiGroups: ["nightshift.dev"]
  resources: ["scheduledtasks"]
  verbs: ["patch"]
{{- end }}
# Write what happened: a merge patch of the status subresource, at the resourceVersion decided on.
- apiGroups: ["nightshift.dev"]
  resources: ["scheduledtasks/status"]
  verbs: ["patch"]
# Calendars: watched, so that a change reaches every task that references one at once.
# Backfills: watched, read again on a conflict.
- apiGroups: ["nightshift.dev"]
  resources: ["calendars", "backfills"]
  verbs: ["get", "list", "watch"]
# A Backfill's plan and progress, at the resourceVersion decided on.
- apiGroups: ["nightshift.dev"]
  resources: ["backfills/status"]
  verbs: ["patch"]
# A Job's controller ownerReference names its task with blockOwnerDeletion: true (a foreground
# deletion of the task waits for its Jobs). Where the OwnerReferencesPermissionEnforcement
# admission plugin runs (OpenShift does), setting that needs `update` on the task's finalizers;
# the operator never writes a finalizer.
- apiGroups: ["nightshift.dev"]
  resources: ["scheduledtasks/finalizers"]
  verbs: ["update"]
# Create one Job per (task, slot, attempt); read one back on AlreadyExists to adopt it; watch
# the labelled ones; delete pruned, replaced and cancelled ones.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "delete"]
{{- if gt (int .Values.sharding.shards) 1 }}
# Shards: label the Jobs made before shards existed with their task's bucket.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["patch"]
{{- end }}
# Exit codes and termination messages of a finished Job's pods (listed by job-name label).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# One core/v1 Event per transition (generateName); the same one again within 10 minutes counts
# on the first (a patch of its count), as client-go's recorder does.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
