{{- /*
Named templates of the admission webhook (webhook.enabled). They read the
root context (.Values, .Release): the webhook is installed by this chart, not
embedded in a parent's pods.
*/ -}}

{{- define "smtpbind.webhook.name" -}}
{{- printf "%s-webhook" (include "smtpbind.prefix" (dict "release" .Release.Name)) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "smtpbind.webhook.tlsSecret" -}}
{{- .Values.webhook.tls.existingSecret | default (printf "%s-tls" (include "smtpbind.webhook.name" .)) -}}
{{- end -}}

{{- define "smtpbind.webhook.selectorLabels" -}}
app.kubernetes.io/name: smtpbind
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "smtpbind.webhook.labels" -}}
{{ include "smtpbind.webhook.selectorLabels" . }}
app.kubernetes.io/part-of: smtpbind
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{- /* Every namespace any webhook tenant names. */ -}}
{{- define "smtpbind.webhook.namespaces" -}}
{{- $all := list -}}
{{- range .Values.webhook.tenants -}}
{{- $all = concat $all .namespaces -}}
{{- end -}}
{{- $all | uniq | sortAlpha | toJson -}}
{{- end -}}

{{- /* The webhook's configuration file (contract §8); `smtpbind check` validates it. */ -}}
{{- define "smtpbind.webhook.config" -}}
{{- $v := .Values -}}
# Rendered by the smtpbind Helm chart; `smtpbind check` validates it.
version: 1
sidecar:
  image: {{ printf "%s:%s" $v.image.repository $v.image.tag | toRawJson }}
  image_pull_policy: {{ default "IfNotPresent" $v.image.pullPolicy | toRawJson }}
  egress_lockdown: {{ $v.egressLockdown.enabled }}
  {{- if $v.egressLockdown.enabled }}
  lockdown_image: {{ printf "%s:%s" $v.egressLockdown.image.repository $v.egressLockdown.image.tag | toRawJson }}
  {{- if $v.transparent }}
  transparent: true
  {{- end }}
  {{- end }}
tenants:
  {{- range $t := $v.webhook.tenants }}
  {{- $ctx := dict "values" $v "tenant" $t "release" $.Release.Name }}
  {{- $u := include "smtpbind.upstreamJson" $ctx | fromJson }}
  - name: {{ toRawJson $t.name }}
    namespaces: {{ toRawJson $t.namespaces }}
    credential_secret: {{ toRawJson $t.credentialSecret }}
    policy_config_map: {{ include "smtpbind.policyConfigMapName" $ctx | toRawJson }}
    {{- with $t.clientTls }}
    client_tls_secret: {{ toRawJson .secret }}
    {{- end }}
    {{- /* rule 7: where this tenant's key may go, whatever its policy ConfigMap says */}}
    upstream:
      address: {{ toRawJson (required (printf "smtpbind: webhook tenant %s needs upstream.address (or the chart's upstream.address)" $t.name) $u.address) }}
      {{- with $u.serverName }}
      server_name: {{ toRawJson . }}
      {{- end }}
    {{- if and (eq (default "auto" $t.mechanism) "xoauth2") $t.oauth2 $t.oauth2.tokenUrl }}
    token_url: {{ toRawJson $t.oauth2.tokenUrl }}
    {{- end }}
    {{- if $v.egressLockdown.enabled }}
    {{- $ports := list }}
    {{- range splitList "," (include "smtpbind.lockdownPorts" $ctx) }}
    {{- $ports = append $ports (int .) }}
    {{- end }}
    {{- /* omitted when it is the webhook's default */}}
    {{- if ne (toJson $ports) (toJson (list 25 465 587 2525)) }}
    lockdown_ports: {{ toJson $ports }}
    {{- end }}
    {{- end }}
  {{- end }}
{{- end -}}

{{- /* Where the API server may call the webhook: tenant namespaces only, never kube-system or the webhook's own. */ -}}
{{- define "smtpbind.webhook.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    # by name, a label no tenant can set (an exemption by a settable label is a privilege escalation)
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: {{ list "kube-system" .Release.Namespace | uniq | toJson }}
    - key: kubernetes.io/metadata.name
      operator: In
      values: {{ include "smtpbind.webhook.namespaces" . }}
  {{- with .Values.webhook.namespaceLabels }}
  matchLabels:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{- define "smtpbind.webhook.clientConfig" -}}
{{- $root := .root -}}
clientConfig:
  service:
    name: {{ include "smtpbind.webhook.name" $root }}
    namespace: {{ $root.Release.Namespace }}
    path: {{ .path }}
    port: 443
  {{- with .caBundle }}
  caBundle: {{ . }}
  {{- end }}
{{- end -}}
