{{/*
What the operator calls, and nothing more. tests/chart/test_rbac.py compares these rules with
the operator's own list of API calls; change both together.
*/}}

{{/* Rules inside each watched namespace (a Role there, or part of the ClusterRole). */}}
{{- define "streamvane.rbac.namespacedRules" -}}
- apiGroups: ["streamvane.io"]
  resources: ["pipelines", "inferencebackends"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["streamvane.io"]
  resources: ["pipelines/status", "inferencebackends/status"]
  verbs: ["get", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* Cluster-scoped rules, granted only in cluster mode. */}}
{{- define "streamvane.rbac.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
