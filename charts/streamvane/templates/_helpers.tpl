{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "streamvane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; the release name alone when it already contains the chart name. */}}
{{- define "streamvane.fullname" -}}
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

{{/* Recommended labels (app.kubernetes.io/*) on every object of the chart, for the operator. */}}
{{- define "streamvane.labels" -}}
{{ include "streamvane.labelsOf" (dict "root" . "component" "operator") }}
{{- end }}

{{/* The recommended labels of one operator component (dict: root, component). */}}
{{- define "streamvane.labelsOf" -}}
{{ include "streamvane.metaLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The recommended labels without a component, for objects that name their own. */}}
{{- define "streamvane.metaLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "streamvane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: streamvane
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Immutable subset used by the Deployment selector and the Service. */}}
{{- define "streamvane.selectorLabels" -}}
{{ include "streamvane.selectorLabelsOf" (dict "root" . "component" "operator") }}
{{- end }}

{{/* Selector labels of one operator component (dict: root, component "operator" or "hub"). */}}
{{- define "streamvane.selectorLabelsOf" -}}
app.kubernetes.io/name: {{ include "streamvane.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "streamvane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "streamvane.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, the tag defaulting to the chart's appVersion; a digest wins over both. */}}
{{- define "streamvane.image" -}}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository (default .appVersion .tag) }}
{{- end }}
{{- end }}

{{- define "streamvane.operatorImage" -}}
{{- include "streamvane.image" (merge (dict "appVersion" .Chart.AppVersion) .Values.image) }}
{{- end }}

{{- define "streamvane.workerImage" -}}
{{- include "streamvane.image" (merge (dict "appVersion" .Chart.AppVersion) .Values.workers.image) }}
{{- end }}

{{/* Namespaces the operator watches in namespaced mode: the release namespace when none given. */}}
{{- define "streamvane.watchNamespaces" -}}
{{- if .Values.watch.namespaces }}
{{- join "," (uniq .Values.watch.namespaces) }}
{{- else }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}

{{/* Command-line options of `python -m streamvane_operator` (see its --help). */}}
{{- define "streamvane.operatorArgs" -}}
{{- $root := .root }}
{{- if ne $root.Values.watch.mode "cluster" }}
{{- range splitList "," (include "streamvane.watchNamespaces" $root) }}
- --namespace={{ . }}
{{- end }}
{{- end }}
{{- if eq .mode "hub" }}
- --mode=hub
- --hub-tick-seconds={{ $root.Values.hub.tickSeconds }}
{{- else }}
- --worker-image={{ include "streamvane.workerImage" $root }}
- --worker-log-format={{ $root.Values.workers.logFormat }}
- --model-serving-seconds={{ $root.Values.operator.modelServingSeconds }}
{{- end }}
- --liveness-port=$(STREAMVANE_OPERATOR_LIVENESS_PORT)
- --metrics-port=$(STREAMVANE_OPERATOR_METRICS_PORT)
{{- if and (eq .mode "operator") $root.Values.leaderElection.enabled }}
- --peering={{ $root.Values.leaderElection.name }}
- --peering-lifetime={{ $root.Values.leaderElection.lifetimeSeconds }}
{{- end }}
- --resync-seconds={{ $root.Values.operator.resyncSeconds }}
- --log-format={{ $root.Values.operator.logFormat }}
{{- if $root.Values.operator.verbose }}
- --verbose
{{- end }}
{{- end }}

{{/* Labels the operator puts on every worker pod it renders. */}}
{{- define "streamvane.workerSelectorLabels" -}}
app.kubernetes.io/part-of: streamvane
app.kubernetes.io/component: worker
{{- end }}

{{/* Name of the worker container port serving /healthz, /readyz and /metrics. */}}
{{- define "streamvane.workerMetricsPort" -}}
http
{{- end }}
