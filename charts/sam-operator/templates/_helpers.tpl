{{/* One helper per concern (bitnami style). Every define is prefixed with the chart name. */}}

{{/* Chart name, overridable. */}}
{{- define "sam-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart> (or the release name when it already contains the chart name), 63 chars max. */}}
{{- define "sam-operator.fullname" -}}
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

{{/* Name of the gateway objects: <fullname>-gateway (the suffix survives truncation). */}}
{{- define "sam-operator.gateway.fullname" -}}
{{- printf "%s-gateway" (include "sam-operator.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/* chart label value. */}}
{{- define "sam-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Immutable selector labels (name + instance); components add app.kubernetes.io/component. */}}
{{- define "sam-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sam-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "sam-operator.labels" -}}
helm.sh/chart: {{ include "sam-operator.chart" . }}
{{ include "sam-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sam-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of the operator pod. */}}
{{- define "sam-operator.operator.selectorLabels" -}}
{{ include "sam-operator.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Selector labels of the gateway pods. part-of + component are also what the encoder NetworkPolicy admits
(SAM_OPERATOR_GATEWAY_POD_LABELS is rendered from the same helper). */}}
{{- define "sam-operator.gateway.selectorLabels" -}}
{{ include "sam-operator.selectorLabels" . }}
app.kubernetes.io/component: gateway
{{- end }}

{{/* The labels the encoder NetworkPolicy uses to admit gateway pods (any namespace). */}}
{{- define "sam-operator.gateway.networkPolicyLabels" -}}
{"app.kubernetes.io/part-of":"sam-operator","app.kubernetes.io/component":"gateway","app.kubernetes.io/instance":{{ .Release.Name | quote }}}
{{- end }}

{{/* ServiceAccount of the operator. */}}
{{- define "sam-operator.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "sam-operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* ServiceAccount of the gateway. */}}
{{- define "sam-operator.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create }}
{{- default (include "sam-operator.gateway.fullname" .) .Values.gateway.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.gateway.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Operator/gateway image reference. */}}
{{- define "sam-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Default encoder image reference. */}}
{{- define "sam-operator.encoderImage" -}}
{{- printf "%s:%s" .Values.operator.encoderImage.repository (default .Chart.AppVersion .Values.operator.encoderImage.tag) }}
{{- end }}

{{/* Namespaces served when rbac.scope=namespaced (JSON list); empty list (= all) for cluster scope. */}}
{{- define "sam-operator.watchNamespaces" -}}
{{- if eq .Values.rbac.scope "namespaced" }}
{{- default (list .Release.Namespace) .Values.rbac.namespaces | uniq | toJson }}
{{- else }}
{{- list | toJson }}
{{- end }}
{{- end }}

{{/* The namespace of the dashboard ConfigMaps. */}}
{{- define "sam-operator.dashboardsNamespace" -}}
{{- default .Release.Namespace .Values.dashboards.namespace }}
{{- end }}
