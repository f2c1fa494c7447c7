{{/* Names and labels shared by every object of the chart. */}}

{{- define "canfar-controller.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "canfar-controller.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "canfar-controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "canfar-controller.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "canfar-controller.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "canfar-controller.selectorLabels" . }}
app.kubernetes.io/component: controller
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "canfar-controller.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "canfar-controller.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the token: created from token.value when that is set, else the existing one. */}}
{{- define "canfar-controller.tokenSecretName" -}}
{{- if .Values.token.value -}}
{{- printf "%s-token" (include "canfar-controller.fullname" .) -}}
{{- else -}}
{{- required "token.existingSecret or token.value is required" .Values.token.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "canfar-controller.tokenSecretKey" -}}
{{- if .Values.token.value -}}token{{- else -}}{{ .Values.token.existingSecretKey }}{{- end -}}
{{- end -}}

{{- define "canfar-controller.sessionSetsConfigMapName" -}}
{{- default (printf "%s-sessionsets" (include "canfar-controller.fullname" .)) .Values.existingSessionSetsConfigMap -}}
{{- end -}}

{{/* The claim holding /var/lib/canfar-controller when persistence is on: the given one, or the chart's. */}}
{{- define "canfar-controller.statusClaimName" -}}
{{- default (printf "%s-status" (include "canfar-controller.fullname" .)) .Values.persistence.existingClaim -}}
{{- end -}}

{{/* Whether a canfar config (Secret) is used instead of the token. */}}
{{- define "canfar-controller.usesCanfarConfig" -}}
{{- if or .Values.canfarConfig.existingSecret .Values.canfarConfig.value -}}true{{- end -}}
{{- end -}}

{{/* The Secret holding the canfar config: created from canfarConfig.value when that is set, else the existing one. */}}
{{- define "canfar-controller.canfarConfigSecretName" -}}
{{- if .Values.canfarConfig.value -}}
{{- printf "%s-canfar-config" (include "canfar-controller.fullname" .) -}}
{{- else -}}
{{- .Values.canfarConfig.existingSecret -}}
{{- end -}}
{{- end -}}
