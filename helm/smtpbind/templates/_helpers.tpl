{{- /*
Named templates of the smtpbind chart.

The ones a parent chart may include (see docs/kubernetes.md, "Embedding") take
one argument, a dict:

  values   the smtpbind values (in a parent chart: .Values.smtpbind)
  tenant   one tenant, shaped like an item of the chart's `tenants` list
           (only name, credentialSecret, pins, senders and the optional
           policy keys are read; `mailer` is not needed)
  release  the release name (.Release.Name); object names derive from it

  smtpbind.sidecar         the smtpbind container (one list item)
  smtpbind.egressLockdown  the lock-down init container (empty when disabled)
  smtpbind.initContainers  lock-down + smtpbind when values.nativeSidecar
  smtpbind.containers      smtpbind when not values.nativeSidecar
  smtpbind.volumes         the volumes the two containers above mount
  smtpbind.mailerEnv       SMTP_HOST / SMTP_PORT for the application container
  smtpbind.configmap       the tenant's policy ConfigMap (a whole object)
  smtpbind.policy          the policy file itself

None of them reads .Values, .Files or .Chart, so they render the same from a
parent chart as from this one.
*/ -}}

{{- /* Constants shared by the templates; the Dockerfile and the policy agree. */ -}}
{{- define "smtpbind.uid" -}}65532{{- end -}}
{{- define "smtpbind.smtpPort" -}}2525{{- end -}}
{{- define "smtpbind.adminPort" -}}9525{{- end -}}
{{- define "smtpbind.policyDir" -}}/etc/smtpbind/policy{{- end -}}
{{- define "smtpbind.secretDir" -}}/var/run/secrets/smtpbind{{- end -}}
{{- define "smtpbind.caDir" -}}/etc/smtpbind/upstream-ca{{- end -}}
{{- define "smtpbind.oauth2CaDir" -}}/etc/smtpbind/oauth2-ca{{- end -}}
{{- define "smtpbind.clientTlsDir" -}}/var/run/secrets/smtpbind-client-tls{{- end -}}
{{- define "smtpbind.clientCaDir" -}}/etc/smtpbind-ca{{- end -}}
{{- define "smtpbind.implicitPort" -}}4650{{- end -}}

{{- /* Name prefix of every object: the release name, with "-smtpbind" unless it already says so. */ -}}
{{- define "smtpbind.prefix" -}}
{{- $rel := required "smtpbind: the template argument needs `release`" .release -}}
{{- if contains "smtpbind" $rel -}}
{{- $rel | trunc 24 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-smtpbind" $rel | trunc 24 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "smtpbind.tenantName" -}}
{{- $t := required "smtpbind: the template argument needs `tenant`" .tenant -}}
{{- required "smtpbind: a tenant needs a name" $t.name -}}
{{- end -}}

{{- /* <prefix>-<tenant>: Deployment, NetworkPolicy. */ -}}
{{- define "smtpbind.tenantFullname" -}}
{{- printf "%s-%s" (include "smtpbind.prefix" .) (include "smtpbind.tenantName" .) -}}
{{- end -}}

{{- define "smtpbind.policyConfigMapName" -}}
{{- if .tenant.namespaces -}}
{{- /* a webhook tenant: the name its injected sidecars mount in each namespace */ -}}
{{- .tenant.policyConfigMap | default (printf "%s-smtpbind" .tenant.name) -}}
{{- else -}}
{{- printf "%s-policy" (include "smtpbind.tenantFullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "smtpbind.metricsServiceName" -}}
{{- printf "%s-metrics" (include "smtpbind.tenantFullname" .) -}}
{{- end -}}

{{- /* Labels that select one tenant's pods. */ -}}
{{- define "smtpbind.selectorLabels" -}}
app.kubernetes.io/name: smtpbind
app.kubernetes.io/instance: {{ .release | quote }}
smtpbind/tenant: {{ include "smtpbind.tenantName" . | quote }}
{{- end -}}

{{- /* Labels of every object that belongs to one tenant. */ -}}
{{- define "smtpbind.labels" -}}
{{ include "smtpbind.selectorLabels" . }}
app.kubernetes.io/component: tenant
app.kubernetes.io/part-of: smtpbind
smtpbind.dev/tenant: {{ include "smtpbind.tenantName" . | quote }}
{{- end -}}

{{- /* The tenant's upstream: every key the tenant sets (even "" or false) over the chart-wide one. */ -}}
{{- define "smtpbind.upstreamJson" -}}
{{- $u := deepCopy (default dict .values.upstream) -}}
{{- range $k, $val := (default dict .tenant.upstream) -}}
{{- $_ := set $u $k $val -}}
{{- end -}}
{{- toJson $u -}}
{{- end -}}

{{- define "smtpbind.upstreamPort" -}}
{{- $u := include "smtpbind.upstreamJson" . | fromJson -}}
{{- $addr := required "smtpbind: upstream.address is required" $u.address -}}
{{- regexFind "[0-9]+$" $addr -}}
{{- end -}}

{{- /* The policy file (contract §3). Strings go through toRawJson, so any value is quoted safely. */ -}}
{{- define "smtpbind.policy" -}}
{{- $v := .values -}}
{{- $t := .tenant -}}
{{- $u := include "smtpbind.upstreamJson" . | fromJson -}}
# Rendered by the smtpbind Helm chart for tenant {{ $t.name }}; `smtpbind check` validates it.
version: 1
tenant: {{ toRawJson $t.name }}
listen: "127.0.0.1:{{ include "smtpbind.smtpPort" . }}"
admin: "0.0.0.0:{{ include "smtpbind.adminPort" . }}"
upstream:
  address: {{ toRawJson (required "smtpbind: upstream.address is required" $u.address) }}
  tls: {{ toRawJson (default "starttls" $u.tls) }}
  {{- if $u.insecure }}
  insecure: true
  {{- end }}
  {{- if and $t.namespaces (eq (toString $u.caSecret) (toString $t.credentialSecret)) }}
  {{- /* a webhook tenant's private CA rides in its credential Secret (rule 7's default CA) */}}
  ca_file: {{ toRawJson (printf "%s/ca.crt" (include "smtpbind.secretDir" .)) }}
  {{- else if $u.caSecret }}
  ca_file: {{ toRawJson (printf "%s/%s" (include "smtpbind.caDir" .) (default "ca.crt" $u.caSecretKey)) }}
  {{- end }}
  {{- if $u.serverName }}
  server_name: {{ toRawJson $u.serverName }}
  {{- end }}
  {{- if $u.ehloName }}
  ehlo_name: {{ toRawJson $u.ehloName }}
  {{- end }}
  {{- if $u.connectTimeout }}
  connect_timeout: {{ toRawJson $u.connectTimeout }}
  {{- end }}
  {{- if $u.replyTimeout }}
  reply_timeout: {{ toRawJson $u.replyTimeout }}
  {{- end }}
  {{- if hasKey $u "maxConnections" }}
  max_connections: {{ int $u.maxConnections }}
  {{- end }}
  {{- if $u.chunking }}
  chunking: {{ toRawJson $u.chunking }}
  {{- end }}
  {{- with $u.reuse }}
  reuse:
    {{- if hasKey . "maxIdle" }}
    max_idle: {{ int .maxIdle }}
    {{- end }}
    {{- if .idleTimeout }}
    idle_timeout: {{ toRawJson .idleTimeout }}
    {{- end }}
    {{- if hasKey . "prewarm" }}
    prewarm: {{ int .prewarm }}
    {{- end }}
  {{- end }}
credential:
  secret_dir: {{ toRawJson (include "smtpbind.secretDir" .) }}
  mechanism: {{ toRawJson (default "auto" $t.mechanism) }}
  pins: {{ toRawJson (required (printf "smtpbind: tenant %s needs pins" $t.name) $t.pins) }}
  {{- with $t.oauth2 }}
  oauth2:
    flow: {{ toRawJson .flow }}
    token_url: {{ toRawJson .tokenUrl }}
    scope: {{ toRawJson .scope }}
    user: {{ toRawJson .user }}
    {{- if .refreshBefore }}
    refresh_before: {{ toRawJson .refreshBefore }}
    {{- end }}
    {{- if .caSecret }}
    ca_file: {{ toRawJson (printf "%s/%s" (include "smtpbind.oauth2CaDir" $) (default "ca.crt" .caSecretKey)) }}
    {{- end }}
  {{- end }}
  {{- with $t.ses }}
  ses:
    region: {{ toRawJson .region }}
  {{- end }}
client:
  auth: {{ toRawJson (default "required" $t.clientAuth) }}
  {{- with $t.clientTls }}
  tls:
    cert_dir: {{ toRawJson (include "smtpbind.clientTlsDir" $) }}
    starttls: {{ toRawJson (default "offer" .starttls) }}
    {{- if .implicit }}
    implicit_listen: "127.0.0.1:{{ include "smtpbind.implicitPort" $ }}"
    {{- end }}
  {{- end }}
  {{- if ne (default "required" $t.clientAuth) "none" }}
  accept:
    {{- range (default (list (dict "username" "apikey" "password" "mounted")) $t.accept) }}
    - username: {{ toRawJson .username }}
      password: {{ toRawJson .password }}
    {{- end }}
  {{- end }}
senders: {{ toRawJson (required (printf "smtpbind: tenant %s needs senders" $t.name) $t.senders) }}
header_from: {{ toRawJson (default "enforce" $t.headerFrom) }}
{{- with $t.recipients }}
recipients:
  {{- if hasKey . "maxPerMessage" }}
  max_per_message: {{ int .maxPerMessage }}
  {{- end }}
  {{- if hasKey . "domains" }}
  domains: {{ toRawJson .domains }}
  {{- end }}
{{- end }}
{{- with $t.limits }}
limits:
  {{- if hasKey . "maxMessageBytes" }}
  max_message_bytes: {{ int64 .maxMessageBytes }}
  {{- end }}
  {{- if hasKey . "maxSessions" }}
  max_sessions: {{ int .maxSessions }}
  {{- end }}
  {{- if hasKey . "commandTimeout" }}
  command_timeout: {{ toRawJson .commandTimeout }}
  {{- end }}
  {{- if hasKey . "dataTimeout" }}
  data_timeout: {{ toRawJson .dataTimeout }}
  {{- end }}
  {{- with .rate }}
  rate:
    messages_per_second: {{ toRawJson .messagesPerSecond }}
    {{- if hasKey . "burst" }}
    burst: {{ int .burst }}
    {{- end }}
    {{- if .maxWait }}
    max_wait: {{ toRawJson .maxWait }}
    {{- end }}
  {{- end }}
{{- end }}
data:
  bare_lf: {{ toRawJson (default "reject" $t.bareLf) }}
shutdown:
  drain: "{{ int (default 20 $v.drainSeconds) }}s"
{{- end -}}

{{- define "smtpbind.configmap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "smtpbind.policyConfigMapName" . }}
  {{- with .namespace }}
  namespace: {{ . | quote }}
  {{- end }}
  labels:
    {{- include "smtpbind.labels" . | nindent 4 }}
data:
  policy.yaml: |
    {{- include "smtpbind.policy" . | nindent 4 }}
{{- end -}}

{{- /*
The ports the lock-down covers: the tenant's lockdownPorts (else
egressLockdown.ports), plus the tenant's upstream port, plus SES's other
ports (2465, 2587) for mechanism: ses — so the mailer cannot reach the
provider directly on a port the list forgot.
*/ -}}
{{- define "smtpbind.lockdownPorts" -}}
{{- $ports := list -}}
{{- $t := default dict .tenant -}}
{{- $base := default (list 25 465 587 2525) .values.egressLockdown.ports -}}
{{- if $t.lockdownPorts -}}
{{- $base = $t.lockdownPorts -}}
{{- end -}}
{{- range $base -}}
{{- $ports = append $ports (toString (int .)) -}}
{{- end -}}
{{- $ports = append $ports (include "smtpbind.upstreamPort" .) -}}
{{- if eq (default "auto" $t.mechanism) "ses" -}}
{{- $ports = concat $ports (list "2465" "2587") -}}
{{- end -}}
{{- $ports | uniq | join "," -}}
{{- end -}}

{{- /*
Rule 7 (contract §8): SMTPBIND_UPSTREAM_PIN, host:port[/server_name] of the
tenant's upstream. The sidecar is not ready while its policy (a ConfigMap a
tenant may be able to edit) names another upstream. Empty with upstream.pin: false.
*/ -}}
{{- define "smtpbind.upstreamPin" -}}
{{- $u := include "smtpbind.upstreamJson" . | fromJson -}}
{{- if or (not (hasKey $u "pin")) $u.pin -}}
{{- $addr := required "smtpbind: upstream.address is required" $u.address -}}
{{- if $u.serverName -}}
{{- printf "%s/%s" $addr $u.serverName -}}
{{- else -}}
{{- $addr -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "smtpbind.egressLockdown" -}}
{{- $v := .values -}}
{{- if and $v.egressLockdown $v.egressLockdown.enabled -}}
{{- $img := $v.egressLockdown.image -}}
- name: smtpbind-egress-lockdown
  image: {{ printf "%s:%s" $img.repository $img.tag | quote }}
  imagePullPolicy: {{ default "IfNotPresent" $img.pullPolicy }}
  # helm/smtpbind/files/egress-lockdown.sh, installed by the Dockerfile's egress-lockdown target
  command: ["/usr/local/bin/smtpbind-egress-lockdown"]
  env:
    - name: SMTPBIND_UID
      value: {{ include "smtpbind.uid" . | quote }}
    - name: SMTPBIND_LOCKDOWN_PORTS
      value: {{ include "smtpbind.lockdownPorts" . | quote }}
    {{- if $v.transparent }}
    # transparent mode: the mailer's connections to these ports go to smtpbind
    - name: SMTPBIND_REDIRECT
      value: "1"
    {{- end }}
  {{- with $v.egressLockdown.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    # root, but with NET_ADMIN as its only capability: enough to write this
    # pod's netfilter rules and nothing else. It exits before the mailer starts.
    runAsUser: 0
    runAsGroup: 0
    runAsNonRoot: false
    privileged: false
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
      add: ["NET_ADMIN"]
    seccompProfile:
      type: RuntimeDefault
  volumeMounts:
    - name: smtpbind-lockdown-run
      mountPath: /run
{{- end -}}
{{- end -}}

{{- define "smtpbind.sidecar" -}}
{{- $v := .values -}}
{{- $u := include "smtpbind.upstreamJson" . | fromJson -}}
- name: smtpbind
  image: {{ printf "%s:%s" $v.image.repository $v.image.tag | quote }}
  imagePullPolicy: {{ default "IfNotPresent" $v.image.pullPolicy }}
  {{- if $v.nativeSidecar }}
  # native sidecar: started (and startup-probed) before the mailer, stopped after it
  restartPolicy: Always
  {{- end }}
  args: ["run", "--policy", "{{ include "smtpbind.policyDir" . }}/policy.yaml"]
  {{- with include "smtpbind.upstreamPin" . }}
  # rule 7: where the credential may go, whatever the policy ConfigMap says
  # (SMTPBIND_UPSTREAM_PIN last: the admission webhook sets it per tenant)
  env:
    {{- if $u.caSecret }}
    - name: SMTPBIND_UPSTREAM_CA
      value: {{ printf "%s/%s" (include "smtpbind.caDir" $) (default "ca.crt" $u.caSecretKey) | quote }}
    {{- end }}
    {{- with $.tenant.oauth2 }}
    - name: SMTPBIND_TOKEN_URL_PIN
      value: {{ .tokenUrl | quote }}
    {{- if .caSecret }}
    - name: SMTPBIND_TOKEN_CA
      value: {{ printf "%s/%s" (include "smtpbind.oauth2CaDir" $) (default "ca.crt" .caSecretKey) | quote }}
    {{- end }}
    {{- end }}
    - name: SMTPBIND_UPSTREAM_PIN
      value: {{ . | quote }}
  {{- end }}
  ports:
    - name: metrics
      containerPort: {{ include "smtpbind.adminPort" . }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /readyz
      port: metrics
    periodSeconds: 2
    timeoutSeconds: 2
    failureThreshold: 60
  readinessProbe:
    httpGet:
      path: /readyz
      port: metrics
    periodSeconds: 5
    timeoutSeconds: 2
    failureThreshold: 2
  livenessProbe:
    httpGet:
      path: /healthz
      port: metrics
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 3
  {{- with $v.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: {{ include "smtpbind.uid" . }}
    runAsGroup: {{ include "smtpbind.uid" . }}
    readOnlyRootFilesystem: true
    allowPrivilegeEscalation: false
    privileged: false
    capabilities:
      drop: ["ALL"]
    seccompProfile:
      type: RuntimeDefault
  volumeMounts:
    # whole directories, never subPath: the kubelet's atomic ..data swap reaches the process
    - name: smtpbind-policy
      mountPath: {{ include "smtpbind.policyDir" . }}
      readOnly: true
    - name: smtpbind-credential
      mountPath: {{ include "smtpbind.secretDir" . }}
      readOnly: true
    {{- if $u.caSecret }}
    - name: smtpbind-upstream-ca
      mountPath: {{ include "smtpbind.caDir" . }}
      readOnly: true
    {{- end }}
    {{- if and .tenant .tenant.oauth2 .tenant.oauth2.caSecret }}
    - name: smtpbind-oauth2-ca
      mountPath: {{ include "smtpbind.oauth2CaDir" . }}
      readOnly: true
    {{- end }}
    {{- if and .tenant .tenant.clientTls }}
    - name: smtpbind-client-tls
      mountPath: {{ include "smtpbind.clientTlsDir" . }}
      readOnly: true
    {{- end }}
{{- end -}}

{{- define "smtpbind.initContainers" -}}
{{- $parts := list -}}
{{- with include "smtpbind.egressLockdown" . -}}
{{- $parts = append $parts . -}}
{{- end -}}
{{- if .values.nativeSidecar -}}
{{- $parts = append $parts (include "smtpbind.sidecar" .) -}}
{{- end -}}
{{- join "\n" $parts -}}
{{- end -}}

{{- define "smtpbind.containers" -}}
{{- if not .values.nativeSidecar -}}
{{- include "smtpbind.sidecar" . -}}
{{- end -}}
{{- end -}}

{{- define "smtpbind.volumes" -}}
{{- $v := .values -}}
{{- $t := .tenant -}}
{{- $u := include "smtpbind.upstreamJson" . | fromJson -}}
- name: smtpbind-policy
  configMap:
    name: {{ include "smtpbind.policyConfigMapName" . }}
    defaultMode: 0444
- name: smtpbind-credential
  secret:
    # only the smtpbind container mounts this volume
    secretName: {{ required (printf "smtpbind: tenant %s needs credentialSecret" $t.name) $t.credentialSecret }}
    defaultMode: 0444
{{- if $u.caSecret }}
- name: smtpbind-upstream-ca
  secret:
    secretName: {{ $u.caSecret }}
    defaultMode: 0444
    items:
      - key: {{ default "ca.crt" $u.caSecretKey }}
        path: {{ default "ca.crt" $u.caSecretKey }}
{{- end }}
{{- with $t.oauth2 }}
{{- if .caSecret }}
- name: smtpbind-oauth2-ca
  secret:
    # the CA that verifies the token endpoint: only the smtpbind container mounts it
    secretName: {{ .caSecret }}
    defaultMode: 0444
    items:
      - key: {{ default "ca.crt" .caSecretKey }}
        path: {{ default "ca.crt" .caSecretKey }}
{{- end }}
{{- end }}
{{- with $t.clientTls }}
- name: smtpbind-client-tls
  secret:
    # the serving pair toward the mailer: only the smtpbind container mounts it
    secretName: {{ .secret }}
    defaultMode: 0444
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- with .caConfigMap }}
- name: smtpbind-client-ca
  configMap:
    name: {{ . }}
    defaultMode: 0444
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end }}
{{- if and $v.egressLockdown $v.egressLockdown.enabled }}
- name: smtpbind-lockdown-run
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- end }}
{{- end -}}

{{- define "smtpbind.mailerEnv" -}}
- name: SMTP_HOST
  value: "127.0.0.1"
- name: SMTP_PORT
  value: {{ include "smtpbind.smtpPort" . | quote }}
{{- end -}}
