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
{{- $_ := set $fromChart "hooks" (dict "inbound" (dict "token" (dict "env" "OUTRIDER_ADMIN_TOKEN"))) }}
{{- end }}
{{- toYaml (mustMergeOverwrite (deepCopy .Values.config) $fromChart) }}
{{- end }}
