{{/* The chart's name, at most 63 characters (a DNS label). */}}
{{- define "wbd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every resource name: the release name, with the chart's unless it already says it. */}}
{{- define "wbd.fullname" -}}
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

{{/* Labels every resource carries. */}}
{{- define "wbd.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "wbd.selectorLabels" . }}
app.kubernetes.io/version: {{ include "wbd.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the release's pods and services (a component label is added beside them). */}}
{{- define "wbd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wbd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "wbd.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "wbd.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "wbd.imageTag" .) }}
{{- end }}

{{/* The Secret holding DATABASE_URL, AMQP_URL and the secrets keys. */}}
{{- define "wbd.secretName" -}}
{{- default (include "wbd.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/*
One setting as an environment value, in the syntax the settings loader (figment's Env provider)
parses: strings and lists as JSON (a quoted string stays a string even when it reads "true" or
"42"), whole numbers without an exponent, booleans as true/false.
*/}}
{{- define "wbd.settingValue" -}}
{{- if kindIs "string" . }}{{ toJson . }}
{{- else if or (kindIs "slice" .) (kindIs "map" .) }}{{ toJson . }}
{{- else if kindIs "float64" . }}{{ if eq (floor .) . }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else }}{{ . }}
{{- end }}
{{- end }}

{{/* The settings from .Values.config as WBD_<SECTION>__<KEY> variables. */}}
{{- define "wbd.configEnv" -}}
{{- range $section, $keys := .Values.config }}
{{- range $key, $value := $keys }}
- name: {{ printf "WBD_%s__%s" (upper $section) (upper $key) }}
  value: {{ include "wbd.settingValue" $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The settings, then the secrets, then extraEnv: the environment of the API and the workers. */}}
{{- define "wbd.env" -}}
{{- include "wbd.configEnv" . }}
- name: WBD_WORKER__EMBEDDED
  value: "false"
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "wbd.secretName" . }}
      key: DATABASE_URL
- name: AMQP_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "wbd.secretName" . }}
      key: AMQP_URL
- name: WBD_DELIVERY__SECRETS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "wbd.secretName" . }}
      key: WBD_DELIVERY__SECRETS_KEY
- name: WBD_DELIVERY__PREVIOUS_SECRETS_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "wbd.secretName" . }}
      key: WBD_DELIVERY__PREVIOUS_SECRETS_KEYS
      optional: true
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The pod settings both Deployments share. */}}
{{- define "wbd.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- with .Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* Checksum of the chart-made Secret's content: pods restart when it changes. */}}
{{- define "wbd.secretChecksum" -}}
{{- if not .Values.secrets.existingSecret -}}
checksum/secrets: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}
