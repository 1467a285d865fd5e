{{- /*
smtpbind.validate: checks across values that a JSON schema cannot express.
Rendering fails with a message naming the value to fix.
*/ -}}
{{- define "smtpbind.validate" -}}
{{- $v := .Values -}}
{{- if and $v.nativeSidecar $v.tenants (not (semverCompare ">=1.29.0-0" .Capabilities.KubeVersion.Version)) -}}
{{- fail (printf "smtpbind: nativeSidecar needs Kubernetes 1.29 or later (this is %s): set nativeSidecar: false" .Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- if le (int $v.terminationGracePeriodSeconds) (int $v.drainSeconds) -}}
{{- fail (printf "smtpbind: terminationGracePeriodSeconds (%d) must be larger than drainSeconds (%d), or the kubelet kills sessions that are still draining" (int $v.terminationGracePeriodSeconds) (int $v.drainSeconds)) -}}
{{- end -}}
{{- if and $v.transparent (not $v.egressLockdown.enabled) -}}
{{- fail "smtpbind: transparent: true needs egressLockdown.enabled: true (its init container installs the redirect)" -}}
{{- end -}}
{{- $names := dict -}}
{{- $secrets := dict -}}
{{- range $v.tenants -}}
{{- if hasKey $names .name -}}
{{- fail (printf "smtpbind: tenant name %q appears twice in tenants" .name) -}}
{{- end -}}
{{- $_ := set $names .name true -}}
{{- if hasKey $secrets .credentialSecret -}}
{{- fail (printf "smtpbind: tenants %q and %q use the same credentialSecret %q; every tenant needs its own" (get $secrets .credentialSecret) .name .credentialSecret) -}}
{{- end -}}
{{- $_ := set $secrets .credentialSecret .name -}}
{{- end -}}
{{- if and $v.webhook $v.webhook.enabled -}}
{{- if not $v.webhook.tenants -}}
{{- fail "smtpbind: webhook.enabled needs webhook.tenants (the tenants whose pods it injects and guards)" -}}
{{- end -}}
{{- $wnames := dict -}}
{{- range $v.webhook.tenants -}}
{{- if hasKey $wnames .name -}}
{{- fail (printf "smtpbind: webhook tenant name %q appears twice in webhook.tenants" .name) -}}
{{- end -}}
{{- $_ := set $wnames .name true -}}
{{- if has $.Release.Namespace .namespaces -}}
{{- fail (printf "smtpbind: webhook tenant %q lists the release namespace %q: the webhook never guards its own namespace (it could block its own recovery)" .name $.Release.Namespace) -}}
{{- end -}}
{{- if not .namespaces -}}
{{- fail (printf "smtpbind: webhook tenant %q needs namespaces (where its pods live)" .name) -}}
{{- end -}}
{{- $t := . -}}
{{- range $key := list "replicas" "podLabels" "podAnnotations" "mailer" -}}
{{- if hasKey $t $key -}}
{{- fail (printf "smtpbind: webhook tenant %q sets %s, which only chart-managed tenants (tenants[]) have: the webhook injects into the tenant's own pods" $t.name $key) -}}
{{- end -}}
{{- end -}}
{{- if and .upstream .upstream.caSecret (ne .upstream.caSecret .credentialSecret) -}}
{{- fail (printf "smtpbind: webhook tenant %q sets upstream.caSecret %q: the webhook mounts no CA volume into the sidecar it injects; put ca.crt into the credential Secret and set upstream.caSecret to %q, or verify against the public roots" .name .upstream.caSecret .credentialSecret) -}}
{{- end -}}
{{- if and .oauth2 .oauth2.caSecret -}}
{{- fail (printf "smtpbind: webhook tenant %q sets oauth2.caSecret: the webhook does not mount a CA into the sidecar it injects; the token endpoint must verify against the public roots" .name) -}}
{{- end -}}
{{- if and .clientTls .clientTls.caConfigMap -}}
{{- fail (printf "smtpbind: webhook tenant %q sets clientTls.caConfigMap: mount the CA into your mailer yourself (the webhook leaves the mailer's volumes alone)" .name) -}}
{{- end -}}
{{- end -}}
{{- /* The incident's condition: two tenants whose pods share a namespace and a Secret (or a policy). */ -}}
{{- $seen := dict -}}
{{- range $t := $v.webhook.tenants -}}
{{- $cm := include "smtpbind.policyConfigMapName" (dict "tenant" $t) -}}
{{- range $ns := $t.namespaces -}}
{{- range $what := list (list "credentialSecret" $t.credentialSecret) (list "policyConfigMap" $cm) -}}
{{- $key := printf "%s/%s/%s" $ns (index $what 0) (index $what 1) -}}
{{- with get $seen $key -}}
{{- fail (printf "smtpbind: webhook tenants %q and %q share namespace %q and %s %q; every tenant needs its own" . $t.name $ns (index $what 0) (index $what 1)) -}}
{{- end -}}
{{- $_ := set $seen $key $t.name -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $t := $v.tenants -}}
{{- range $key := list "namespaces" "policyConfigMap" -}}
{{- if hasKey $t $key -}}
{{- fail (printf "smtpbind: tenant %q sets %s, which only webhook tenants (webhook.tenants[]) have: chart-managed tenants live in the release namespace" $t.name $key) -}}
{{- end -}}
{{- end -}}
{{- $ctx := dict "values" $v "tenant" $t "release" $.Release.Name -}}
{{- $u := include "smtpbind.upstreamJson" $ctx | fromJson -}}
{{- if and (include "smtpbind.upstreamPin" $ctx) (or $u.insecure (eq (default "starttls" $u.tls) "none")) -}}
{{- fail (printf "smtpbind: tenant %q: upstream tls: none / insecure: true sends the key in plain text, which the upstream pin (rule 7) refuses: the sidecar would never be ready. For a test upstream only, also set upstream.pin: false" $t.name) -}}
{{- end -}}
{{- if $v.egressLockdown.enabled -}}
{{- $n := len (splitList "," (include "smtpbind.lockdownPorts" $ctx)) -}}
{{- if gt $n 15 -}}
{{- fail (printf "smtpbind: tenant %q: the lock-down covers %d ports (lockdownPorts, its upstream port, SES's); iptables multiport takes at most 15" $t.name $n) -}}
{{- end -}}
{{- end -}}
{{- if not $t.mailer -}}
{{- fail (printf "smtpbind: tenant %q needs a mailer (the chart renders one Deployment per tenant; to add smtpbind to your own pods, include the named templates instead, see docs/kubernetes.md)" $t.name) -}}
{{- end -}}
{{- range $k, $_ := (default dict $t.podLabels) -}}
{{- if has $k (list "app.kubernetes.io/name" "app.kubernetes.io/instance" "smtpbind/tenant" "app.kubernetes.io/component" "app.kubernetes.io/part-of") -}}
{{- fail (printf "smtpbind: tenant %q: podLabels may not set %s (the chart sets it)" $t.name $k) -}}
{{- end -}}
{{- end -}}
{{- range (default list $t.mailer.env) -}}
{{- if and .valueFrom .valueFrom.secretKeyRef (hasKey $secrets .valueFrom.secretKeyRef.name) -}}
{{- fail (printf "smtpbind: tenant %q: mailer env %s reads credentialSecret %q; only smtpbind may hold a provider credential" $t.name .name .valueFrom.secretKeyRef.name) -}}
{{- end -}}
{{- end -}}
{{- if $v.egressLockdown.enabled -}}
{{- $sc := default dict $t.mailer.securityContext -}}
{{- if eq (int (default -1 $sc.runAsUser)) 65532 -}}
{{- fail (printf "smtpbind: tenant %q: with egressLockdown the mailer must not run as UID 65532 (smtpbind's UID, the one the rules let through)" $t.name) -}}
{{- end -}}
{{- if $sc.privileged -}}
{{- fail (printf "smtpbind: tenant %q: with egressLockdown the mailer must not be privileged" $t.name) -}}
{{- end -}}
{{- if $sc.allowPrivilegeEscalation -}}
{{- fail (printf "smtpbind: tenant %q: with egressLockdown the mailer needs allowPrivilegeEscalation: false" $t.name) -}}
{{- end -}}
{{- $caps := default dict $sc.capabilities -}}
{{- range (default list $caps.add) -}}
{{- if has . (list "ALL" "NET_ADMIN" "NET_RAW" "SYS_ADMIN" "SETUID" "SETGID" "SYS_PTRACE" "BPF") -}}
{{- fail (printf "smtpbind: tenant %q: with egressLockdown the mailer may not add capability %s (it could undo or get around the rules)" $t.name .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* The mailer's securityContext: the tenant's, with the capabilities that could get around smtpbind dropped. */ -}}
{{- define "smtpbind.mailerSecurityContext" -}}
{{- $v := .values -}}
{{- $sc := deepCopy (default dict .tenant.mailer.securityContext) -}}
{{- $caps := default dict $sc.capabilities -}}
{{- $drop := default list $caps.drop -}}
{{- if not (has "ALL" $drop) -}}
{{- $drop = concat $drop (list "NET_ADMIN" "NET_RAW") -}}
{{- if $v.egressLockdown.enabled -}}
{{- $drop = concat $drop (list "SETUID" "SETGID") -}}
{{- end -}}
{{- end -}}
{{- $_ := set $caps "drop" (uniq $drop) -}}
{{- $_ := set $sc "capabilities" $caps -}}
{{- if $v.egressLockdown.enabled -}}
{{- $_ := set $sc "allowPrivilegeEscalation" false -}}
{{- end -}}
{{- toYaml $sc -}}
{{- end -}}
