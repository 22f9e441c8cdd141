{{/* Chart name, overridable. */}}
{{- define "outrider.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name: <release>-outrider unless the release name already says it. */}}
{{- define "outrider.fullname" -}}
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

{{/* Selector labels: stable across upgrades. */}}
{{- define "outrider.selectorLabels" -}}
app.kubernetes.io/name: {{ include "outrider.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "outrider.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 }}
{{ include "outrider.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "outrider.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "outrider.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "outrider.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
outrider's config file: the user's `config`, with the keys that must agree with the pod
(ports, bind addresses, state directory, the inbound token's source) set from the chart's
values.
*/}}
{{- define "outrider.config" -}}
{{- $upstreamHost := .Values.upstream.host }}
{{- if eq .Values.mode "sidecar" }}
{{- $upstreamHost = "127.0.0.1" }}
{{- end }}
{{- $fromChart := dict
  "state_dir" .Values.stateDir
  "admin" (dict "host" "0.0.0.0" "port" .Values.admin.port)
  "dataplane" (dict
    "listen_host" "0.0.0.0"
    "listen_port" .Values.listen.port
    "upstream" (dict "host" $upstreamHost "port" .Values.upstream.port)) }}
{{- if .Values.admin.tokenSecret.name }}
{{- $_ := set $fromChart "hooks" (dict "inbound" (dict "token" (dict "file" (include "outrider.adminTokenFile" .)))) }}
{{- end }}
{{- toYaml (mustMergeOverwrite (deepCopy .Values.config) $fromChart) }}
{{- end }}

{{/* Where the admin token Secret's key is mounted in outrider's container. */}}
{{- define "outrider.adminTokenDir" -}}
/var/run/secrets/outrider/admin
{{- end }}
{{- define "outrider.adminTokenFile" -}}
{{ include "outrider.adminTokenDir" . }}/token
{{- end }}

{{/*
The hooks in config.hooks.hooks that act through this cluster's API server with the pod's
ServiceAccount: Kubernetes-object hooks without a connection.api_url of their own.
*/}}
{{- define "outrider.clusterHooks" -}}
{{- $found := list }}
{{- range $hook := (dig "hooks" "hooks" (list) .Values.config) }}
{{- if and (has $hook.type (list "kubernetes-deployment" "argo-rollouts" "kserve")) (not (dig "connection" "api_url" "" $hook)) }}
{{- $found = append $found $hook }}
{{- end }}
{{- end }}
{{- toYaml (dict "hooks" $found) }}
{{- end }}

{{/* "true" when outrider needs a ServiceAccount token (a cluster hook is configured). */}}
{{- define "outrider.needsApiToken" -}}
{{- if (include "outrider.clusterHooks" . | fromYaml).hooks }}true{{ end }}
{{- end }}

{{/*
RBAC rules per namespace for the cluster hooks, scoped to the objects they name:
  kubernetes-deployment: get and patch the Deployment, list ReplicaSets (RBAC cannot narrow
                         list by name) to find the previous revision;
  argo-rollouts:         get the Rollout, patch its status subresource (abort);
  kserve:                get and patch the InferenceService (canaryTrafficPercent).
*/}}
{{- define "outrider.hookRules" -}}
{{- $names := dict }}
{{- range $hook := (include "outrider.clusterHooks" . | fromYaml).hooks }}
{{- $ns := $hook.namespace }}
{{- $entry := get $names $ns | default (dict "deployments" (list) "rollouts" (list) "inferenceservices" (list)) }}
{{- if eq $hook.type "kubernetes-deployment" }}
{{- $_ := set $entry "deployments" (append $entry.deployments $hook.deployment | uniq) }}
{{- else if eq $hook.type "argo-rollouts" }}
{{- $_ := set $entry "rollouts" (append $entry.rollouts $hook.rollout | uniq) }}
{{- else }}
{{- $_ := set $entry "inferenceservices" (append $entry.inferenceservices $hook.inference_service | uniq) }}
{{- end }}
{{- $_ := set $names $ns $entry }}
{{- end }}
{{- $roles := dict }}
{{- range $ns, $entry := $names }}
{{- $rules := list }}
{{- with $entry.deployments }}
{{- $rules = append $rules (dict "apiGroups" (list "apps") "resources" (list "deployments") "resourceNames" . "verbs" (list "get" "patch")) }}
{{- $rules = append $rules (dict "apiGroups" (list "apps") "resources" (list "replicasets") "verbs" (list "list")) }}
{{- end }}
{{- with $entry.rollouts }}
{{- $rules = append $rules (dict "apiGroups" (list "argoproj.io") "resources" (list "rollouts") "resourceNames" . "verbs" (list "get")) }}
{{- $rules = append $rules (dict "apiGroups" (list "argoproj.io") "resources" (list "rollouts/status") "resourceNames" . "verbs" (list "patch")) }}
{{- end }}
{{- with $entry.inferenceservices }}
{{- $rules = append $rules (dict "apiGroups" (list "serving.kserve.io") "resources" (list "inferenceservices") "resourceNames" . "verbs" (list "get" "patch")) }}
{{- end }}
{{- $_ := set $roles $ns $rules }}
{{- end }}
{{- with .Values.rbac.extraRules }}
{{- $_ := set $roles $.Release.Namespace (concat (get $roles $.Release.Namespace | default (list)) .) }}
{{- end }}
{{- toYaml $roles }}
{{- end }}
