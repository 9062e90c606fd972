{{/*
What the operator calls, and nothing more: these mirror streamvane_operator/rbac.py, and
tests/chart/test_chart_rbac.py fails when the two differ in any group, resource or verb.
*/}}

{{/* Rules inside each watched namespace (a Role there, or part of the ClusterRole). */}}
{{- define "streamvane.rbac.namespacedRules" -}}
# kopf watches and patches (annotations, finalizers); the Deployment-event handler reads the
# Pipeline that owns a changed worker; the Pipeline reconciler lists InferenceBackends.
- apiGroups: ["streamvane.io"]
  resources: ["pipelines"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["streamvane.io"]
  resources: ["inferencebackends"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["streamvane.io"]
  resources: ["pipelines/status", "inferencebackends/status"]
  verbs: ["patch"]
# Worker children: listed by label, read by name before the first apply (someone else's
# object is never taken over), server-side applied, deleted; Deployments also watched.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The autoscaler writes replicas of autoscaled stages through the scale subresource.
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["patch"]
# engine: KEDA stages: a ScaledObject each, a TriggerAuthentication for the Pulsar token.
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects", "triggerauthentications"]
  verbs: ["get", "list", "create", "patch", "delete"]
# Watched too: a child deleted behind the operator's back is restored at once.
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Worker pods: container statuses (crash loops, termination messages) reported in the
# Pipeline's status; watched to report a crash at once.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# The Pulsar token a Pipeline names (spec.pulsar.authSecretRef) and the CA of a TLS Triton
# (preflight), read by name only.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# Kubernetes Events on Pipelines and InferenceBackends.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Leader election (several replicas): kopf watches the KopfPeering and patches keep-alives in.
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["list", "watch", "patch"]
{{- end }}

{{/* Cluster-scoped rules, granted only in cluster mode: kopf notices CRDs and namespaces. */}}
{{- define "streamvane.rbac.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
# Leader election when watching all namespaces: one ClusterKopfPeering.
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["list", "watch", "patch"]
{{- end }}

{{/* The hub operator's rules (hub.enabled), cluster-wide; mirror HUB_RULES in rbac.py. */}}
{{- define "streamvane.rbac.hubRules" -}}
# Hub Pipelines (spec.placement): watched and patched by kopf; status written by the hub.
- apiGroups: ["streamvane.io"]
  resources: ["pipelines"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["streamvane.io"]
  resources: ["pipelines/status"]
  verbs: ["patch"]
# Regions (cluster-scoped): listed for placement, probed on a timer.
- apiGroups: ["streamvane.io"]
  resources: ["regions"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["streamvane.io"]
  resources: ["regions/status"]
  verbs: ["patch"]
# Every rolled-out revision, kept for rollback.
- apiGroups: ["apps"]
  resources: ["controllerrevisions"]
  verbs: ["list", "create", "patch", "delete"]
# The kubeconfig and Pulsar-token Secrets the Regions name, read by name.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
