{{/*
Names.
*/}}
{{- define "salve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "salve.fullname" -}}
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

{{- define "salve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels. "salve.labels" takes (dict "ctx" $ "component" "server").
*/}}
{{- define "salve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "salve.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "salve.labels" -}}
helm.sh/chart: {{ include "salve.chart" .ctx }}
{{ include "salve.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: salve
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "salve.image" -}}
{{- $img := .Values.image -}}
{{- if $img.digest -}}
{{ $img.repository }}@{{ $img.digest }}
{{- else -}}
{{ $img.repository }}:{{ $img.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{- define "salve.serviceAccountName" -}}
{{- $sa := index .ctx.Values .component "serviceAccount" -}}
{{- if $sa.create -}}
{{ default (printf "%s-%s" (include "salve.fullname" .ctx) .component) $sa.name }}
{{- else -}}
{{ default "default" $sa.name }}
{{- end -}}
{{- end }}

{{/*
Roles of the server pods, parsed like app.ParseRoles.
*/}}
{{- define "salve.serverRoles" -}}
{{- $roles := dict -}}
{{- range (splitList "," .Values.server.roles) -}}
{{- $r := trim . -}}
{{- if $r -}}
{{- if not (has $r (list "ingest" "trigger" "api")) -}}
{{- fail (printf "server.roles: unknown role %q: want a comma-separated list of ingest, trigger, api (the worker role is the worker Deployment)" $r) -}}
{{- end -}}
{{- $_ := set $roles $r true -}}
{{- end -}}
{{- end -}}
{{- if not $roles -}}
{{- fail "server.roles: no role given: want a comma-separated list of ingest, trigger, api" -}}
{{- end -}}
{{- toJson $roles -}}
{{- end }}

{{- define "salve.hasRole" -}}
{{- $roles := include "salve.serverRoles" .ctx | fromJson -}}
{{- if hasKey $roles .role }}true{{ end -}}
{{- end }}

{{/*
The audit store is PostgreSQL (a Secret is always a postgres:// URL).
*/}}
{{- define "salve.auditPostgres" -}}
{{- $a := .Values.auditDB -}}
{{- if or $a.existingSecret (hasPrefix "postgres://" $a.url) (hasPrefix "postgresql://" $a.url) }}true{{ end -}}
{{- end }}

{{/* SQLite audit file on a PersistentVolumeClaim. */}}
{{- define "salve.auditPVC" -}}
{{- if and (include "salve.hasRole" (dict "ctx" . "role" "api")) (not (include "salve.auditPostgres" .)) .Values.auditDB.sqlite.persistence.enabled }}true{{ end -}}
{{- end }}

{{/*
Checks that stop a broken release before it reaches the cluster.
*/}}
{{- define "salve.validate" -}}
{{- $api := include "salve.hasRole" (dict "ctx" . "role" "api") -}}
{{- $pg := include "salve.auditPostgres" . -}}
{{- if and $.Values.auditDB.url (not $pg) -}}
{{- fail (printf "auditDB.url %q: want a postgres:// or postgresql:// URL (leave it empty for SQLite on a volume)" .Values.auditDB.url) -}}
{{- end -}}
{{- if and $api (not $pg) (gt (int .Values.server.replicas) 1) -}}
{{- fail (printf "server.replicas is %d with the api role, but the audit store is SQLite: more than one api replica needs PostgreSQL (set auditDB.url or auditDB.existingSecret)" (int .Values.server.replicas)) -}}
{{- end -}}
{{- if and $api (not $pg) .Values.server.autoscaling.enabled -}}
{{- fail "server.autoscaling.enabled with the api role needs a PostgreSQL audit store (set auditDB.url or auditDB.existingSecret): SQLite is for a single replica" -}}
{{- end -}}
{{- if not .Values.nats.url -}}
{{- fail "nats.url is required" -}}
{{- end -}}
{{- if not .Values.temporal.address -}}
{{- fail "temporal.address is required" -}}
{{- end -}}
{{- if lt (int .Values.nats.streamReplicas) 1 -}}
{{- fail "nats.streamReplicas: want 1, 3 or 5" -}}
{{- end -}}
{{- $t := .Values.temporal.tls -}}
{{- if and $t.enabled (not $t.caFile) (not (and $t.existingSecret $t.caKey)) -}}
{{- fail "temporal.tls.enabled: give the frontend's CA (temporal.tls.existingSecret with caKey, or temporal.tls.caFile)" -}}
{{- end -}}
{{- if not (has .Values.runbooks.source (list "values" "configMap" "gitSync")) -}}
{{- fail (printf "runbooks.source %q: want values, configMap or gitSync" .Values.runbooks.source) -}}
{{- end -}}
{{- if and (eq .Values.runbooks.source "configMap") (not .Values.runbooks.existingConfigMap) -}}
{{- fail "runbooks.source configMap: set runbooks.existingConfigMap" -}}
{{- end -}}
{{- if and (eq .Values.runbooks.source "gitSync") (not .Values.runbooks.gitSync.repo) -}}
{{- fail "runbooks.source gitSync: set runbooks.gitSync.repo" -}}
{{- end -}}
{{- if and (not .Values.config.create) (not .Values.config.existingSecret) (not .Values.config.file) -}}
{{- fail "config.create is false: set config.existingSecret or config.file" -}}
{{- end -}}
{{- if .Values.vault.enabled -}}
{{- if not .Values.vault.addr -}}
{{- fail "vault.enabled: set vault.addr" -}}
{{- end -}}
{{- $m := .Values.vault.auth.method -}}
{{- if eq $m "kubernetes" -}}
{{- if not .Values.vault.auth.kubernetesRole -}}
{{- fail "vault.auth.method kubernetes: set vault.auth.kubernetesRole" -}}
{{- end -}}
{{- else if eq $m "approle" -}}
{{- $a := .Values.vault.auth.approle -}}
{{- if or (not $a.roleID) (not (or $a.secretIDFile $a.secretIDSecret.name)) -}}
{{- fail "vault.auth.method approle: set vault.auth.approle.roleID and the secret ID (secretIDSecret.name or secretIDFile)" -}}
{{- end -}}
{{- else -}}
{{- fail (printf "vault.auth.method %q: want kubernetes or approle" $m) -}}
{{- end -}}
{{- $tc := .Values.vault.targetClusters -}}
{{- if not (or $tc.existingConfigMap $tc.inCluster $tc.clusters) -}}
{{- fail "vault.targetClusters: name at least one cluster (inCluster, clusters or existingConfigMap)" -}}
{{- end -}}
{{- range $tc.clusters -}}
{{- if not (and .name .server) -}}
{{- fail "vault.targetClusters.clusters: every cluster needs a name and a server" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) -}}
{{- fail "tls.enabled: set tls.existingSecret (a kubernetes.io/tls Secret)" -}}
{{- end -}}
{{- end }}

{{/*
Secret-file paths: the explicit file wins, else the mounted Secret key.
*/}}
{{- define "salve.natsCredsPath" -}}
{{- if .Values.nats.credsFile }}{{ .Values.nats.credsFile }}{{ else if .Values.nats.credsSecret.name }}/etc/salve/nats-creds/{{ .Values.nats.credsSecret.key }}{{ end -}}
{{- end }}
{{- define "salve.natsCAPath" -}}
{{- if .Values.nats.caFile }}{{ .Values.nats.caFile }}{{ else if .Values.nats.caSecret.name }}/etc/salve/nats-ca/{{ .Values.nats.caSecret.key }}{{ end -}}
{{- end }}
{{- define "salve.configPath" -}}
{{- if .Values.config.file }}{{ .Values.config.file }}{{ else }}/etc/salve/config/{{ .Values.config.key }}{{ end -}}
{{- end }}
{{- define "salve.configSecretName" -}}
{{- if .Values.config.create }}{{ include "salve.fullname" . }}-config{{ else }}{{ .Values.config.existingSecret }}{{ end -}}
{{- end }}
{{- define "salve.webhookSecretName" -}}
{{- default (printf "%s-webhook" (include "salve.fullname" .)) .Values.webhook.existingSecret -}}
{{- end }}
{{- define "salve.vaultCAPath" -}}
{{- if .Values.vault.caFile }}{{ .Values.vault.caFile }}{{ else if .Values.vault.caSecret.name }}/etc/salve/vault-ca/{{ .Values.vault.caSecret.key }}{{ end -}}
{{- end }}
{{- define "salve.runbooksPath" -}}
{{- if eq .Values.runbooks.source "gitSync" -}}
/etc/salve/git/current{{ with trimAll "/" .Values.runbooks.gitSync.path }}/{{ . }}{{ end }}
{{- else -}}
/etc/salve/runbooks
{{- end -}}
{{- end }}

{{/* Does this component's pod mount its ServiceAccount token? */}}
{{- define "salve.automountToken" -}}
{{- if .ctx.Values.vaultAgent.enabled }}true
{{- else if and (eq .component "worker") .ctx.Values.vault.enabled (eq .ctx.Values.vault.auth.method "kubernetes") }}true
{{- else }}false{{ end -}}
{{- end }}

{{/*
The environment of a Salve container: every setting as SALVE_<FLAG>.
Takes (dict "ctx" $ "component" "server"|"worker").
*/}}
{{- define "salve.env" -}}
{{- $ := .ctx -}}
{{- $v := $.Values -}}
{{- $server := eq .component "server" -}}
- name: SALVE_LISTEN
  value: "0.0.0.0:8080"
- name: SALVE_DATA_DIR
  value: /var/lib/salve
- name: SALVE_LOG_LEVEL
  value: {{ $v.log.level | quote }}
- name: SALVE_LOG_FORMAT
  value: {{ $v.log.format | quote }}
- name: SALVE_CONFIG
  value: {{ include "salve.configPath" $ | quote }}
- name: SALVE_RUNBOOKS
  value: {{ include "salve.runbooksPath" $ | quote }}
- name: SALVE_RUNBOOK_RELOAD
  value: {{ $v.runbooks.reload | quote }}
{{- with $v.publicURL }}
- name: SALVE_PUBLIC_URL
  value: {{ . | quote }}
{{- end }}
{{- with $v.prometheusURL }}
- name: SALVE_PROMETHEUS_URL
  value: {{ . | quote }}
{{- end }}
{{- with $v.tracing.traceURL }}
- name: SALVE_TRACE_URL
  value: {{ . | quote }}
{{- end }}
{{- with $v.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- if not (has $v.tracing.protocol (list "http/protobuf" "grpc")) }}
{{- fail (printf "tracing.protocol %q: want http/protobuf or grpc" $v.tracing.protocol) }}
{{- end }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $v.tracing.protocol | quote }}
{{- with $v.tracing.sampler }}
- name: OTEL_TRACES_SAMPLER
  value: {{ . | quote }}
{{- end }}
{{- if ne (toString $v.tracing.samplerArg) "" }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ toString $v.tracing.samplerArg | quote }}
{{- end }}
{{- end }}
- name: SALVE_NATS_URL
  value: {{ $v.nats.url | quote }}
{{- with include "salve.natsCredsPath" $ }}
- name: SALVE_NATS_CREDS
  value: {{ . | quote }}
{{- end }}
{{- with include "salve.natsCAPath" $ }}
- name: SALVE_NATS_CA
  value: {{ . | quote }}
{{- end }}
- name: SALVE_STREAM_REPLICAS
  value: {{ $v.nats.streamReplicas | quote }}
- name: SALVE_ALERTS_MAX_AGE
  value: {{ $v.nats.alertsMaxAge | quote }}
- name: SALVE_ALERTS_MAX_BYTES
  value: {{ $v.nats.alertsMaxBytes | int64 | quote }}
- name: SALVE_AUDIT_MAX_BYTES
  value: {{ $v.nats.auditMaxBytes | int64 | quote }}
- name: SALVE_AUDIT_KEEP_RECORDED
  value: {{ $v.nats.auditKeepRecorded | quote }}
- name: SALVE_TEMPORAL_ADDRESS
  value: {{ $v.temporal.address | quote }}
- name: SALVE_TEMPORAL_NAMESPACE
  value: {{ $v.temporal.namespace | quote }}
{{- $t := $v.temporal.tls }}
{{- if $t.enabled }}
- name: SALVE_TEMPORAL_CA
  value: {{ $t.caFile | default (printf "/etc/salve/temporal-tls/%s" $t.caKey) | quote }}
{{- if or $t.certFile (and $t.existingSecret $t.certKey) }}
- name: SALVE_TEMPORAL_TLS_CERT
  value: {{ $t.certFile | default (printf "/etc/salve/temporal-tls/%s" $t.certKey) | quote }}
{{- end }}
{{- if or $t.keyFile (and $t.existingSecret $t.keyKey) }}
- name: SALVE_TEMPORAL_TLS_KEY
  value: {{ $t.keyFile | default (printf "/etc/salve/temporal-tls/%s" $t.keyKey) | quote }}
{{- end }}
{{- with $t.serverName }}
- name: SALVE_TEMPORAL_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- if $v.tls.enabled }}
- name: SALVE_TLS_CERT
  value: /etc/salve/tls/tls.crt
- name: SALVE_TLS_KEY
  value: /etc/salve/tls/tls.key
{{- end }}
{{- if $server }}
- name: SALVE_ROLES
  value: {{ $v.server.roles | quote }}
{{- if include "salve.hasRole" (dict "ctx" $ "role" "ingest") }}
- name: SALVE_WEBHOOK_TOKEN_FILE
  value: /etc/salve/webhook-token/{{ $v.webhook.key }}
{{- end }}
{{- if include "salve.hasRole" (dict "ctx" $ "role" "api") }}
{{- if $v.auditDB.existingSecret }}
- name: SALVE_AUDIT_DB_FILE
  value: /etc/salve/audit-db/{{ $v.auditDB.key }}
{{- else if $v.auditDB.url }}
- name: SALVE_AUDIT_DB
  value: {{ $v.auditDB.url | quote }}
{{- else }}
- name: SALVE_AUDIT_DB
  value: /var/lib/salve-audit/audit.db
{{- end }}
{{- end }}
{{- else }}
{{- if $v.vault.enabled }}
- name: SALVE_VAULT_ADDR
  value: {{ $v.vault.addr | quote }}
{{- with include "salve.vaultCAPath" $ }}
- name: SALVE_VAULT_CACERT
  value: {{ . | quote }}
{{- end }}
{{- if eq $v.vault.auth.method "kubernetes" }}
- name: SALVE_VAULT_KUBERNETES_AUTH_ROLE
  value: {{ $v.vault.auth.kubernetesRole | quote }}
{{- else }}
- name: SALVE_VAULT_ROLE_ID
  value: {{ $v.vault.auth.approle.roleID | quote }}
- name: SALVE_VAULT_SECRET_ID_FILE
  value: {{ $v.vault.auth.approle.secretIDFile | default (printf "/etc/salve/vault-approle/%s" $v.vault.auth.approle.secretIDSecret.key) | quote }}
{{- end }}
- name: SALVE_VAULT_KUBERNETES_MOUNT
  value: {{ $v.vault.kubernetesSecretsEngine.mount | quote }}
{{- with $v.vault.kubernetesSecretsEngine.defaultRole }}
- name: SALVE_VAULT_KUBERNETES_ROLE
  value: {{ . | quote }}
{{- end }}
- name: SALVE_KUBECONFIG
  value: /etc/salve/clusters/kubeconfig
{{- end }}
{{- end }}
{{- with (index $v .component "extraEnv") }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Volumes and mounts of a Salve pod. Take (dict "ctx" $ "component" ...).
*/}}
{{- define "salve.volumes" -}}
{{- $ := .ctx -}}
{{- $v := $.Values -}}
{{- $server := eq .component "server" -}}
- name: data
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- if not $v.config.file }}
- name: config
  secret:
    secretName: {{ include "salve.configSecretName" $ }}
    items:
      - key: {{ $v.config.key }}
        path: {{ $v.config.key }}
{{- end }}
{{- if eq $v.runbooks.source "gitSync" }}
- name: runbooks
  emptyDir: {}
{{- with $v.runbooks.gitSync.sshSecret.name }}
- name: git-ssh
  secret:
    secretName: {{ . }}
    defaultMode: 0400
{{- end }}
{{- else }}
- name: runbooks
  configMap:
    name: {{ if eq $v.runbooks.source "configMap" }}{{ $v.runbooks.existingConfigMap }}{{ else }}{{ include "salve.fullname" $ }}-runbooks{{ end }}
{{- end }}
{{- if and (not $v.nats.credsFile) $v.nats.credsSecret.name }}
- name: nats-creds
  secret:
    secretName: {{ $v.nats.credsSecret.name }}
    items:
      - key: {{ $v.nats.credsSecret.key }}
        path: {{ $v.nats.credsSecret.key }}
{{- end }}
{{- if and (not $v.nats.caFile) $v.nats.caSecret.name }}
- name: nats-ca
  secret:
    secretName: {{ $v.nats.caSecret.name }}
    items:
      - key: {{ $v.nats.caSecret.key }}
        path: {{ $v.nats.caSecret.key }}
{{- end }}
{{- if and $v.temporal.tls.enabled $v.temporal.tls.existingSecret }}
- name: temporal-tls
  secret:
    secretName: {{ $v.temporal.tls.existingSecret }}
{{- end }}
{{- if $v.tls.enabled }}
- name: tls
  secret:
    secretName: {{ $v.tls.existingSecret }}
{{- end }}
{{- if and $server (include "salve.hasRole" (dict "ctx" $ "role" "ingest")) }}
- name: webhook-token
  secret:
    secretName: {{ include "salve.webhookSecretName" $ }}
    items:
      - key: {{ $v.webhook.key }}
        path: {{ $v.webhook.key }}
{{- end }}
{{- if and $server (include "salve.hasRole" (dict "ctx" $ "role" "api")) $v.auditDB.existingSecret }}
- name: audit-db
  secret:
    secretName: {{ $v.auditDB.existingSecret }}
    items:
      - key: {{ $v.auditDB.key }}
        path: {{ $v.auditDB.key }}
{{- end }}
{{- if and $server (include "salve.hasRole" (dict "ctx" $ "role" "api")) (not (include "salve.auditPostgres" $)) }}
- name: audit
{{- if include "salve.auditPVC" $ }}
  persistentVolumeClaim:
    claimName: {{ include "salve.fullname" $ }}-audit
{{- else }}
  emptyDir: {}
{{- end }}
{{- end }}
{{- if and (not $server) $v.vault.enabled }}
{{- if and (not $v.vault.caFile) $v.vault.caSecret.name }}
- name: vault-ca
  secret:
    secretName: {{ $v.vault.caSecret.name }}
    items:
      - key: {{ $v.vault.caSecret.key }}
        path: {{ $v.vault.caSecret.key }}
{{- end }}
{{- $ar := $v.vault.auth.approle }}
{{- if and (eq $v.vault.auth.method "approle") (not $ar.secretIDFile) $ar.secretIDSecret.name }}
- name: vault-approle
  secret:
    secretName: {{ $ar.secretIDSecret.name }}
    items:
      - key: {{ $ar.secretIDSecret.key }}
        path: {{ $ar.secretIDSecret.key }}
{{- end }}
- name: clusters
  configMap:
    name: {{ $v.vault.targetClusters.existingConfigMap | default (printf "%s-clusters" (include "salve.fullname" $)) }}
    items:
      - key: kubeconfig
        path: kubeconfig
{{- if and $v.vault.targetClusters.inCluster (not $v.vault.targetClusters.existingConfigMap) }}
- name: kube-root-ca
  configMap:
    name: kube-root-ca.crt
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end }}
{{- with (index $v .component "extraVolumes") }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "salve.volumeMounts" -}}
{{- $ := .ctx -}}
{{- $v := $.Values -}}
{{- $server := eq .component "server" -}}
- name: data
  mountPath: /var/lib/salve
- name: tmp
  mountPath: /tmp
{{- if not $v.config.file }}
- name: config
  mountPath: /etc/salve/config
  readOnly: true
{{- end }}
{{- if eq $v.runbooks.source "gitSync" }}
- name: runbooks
  mountPath: /etc/salve/git
  readOnly: true
{{- else }}
- name: runbooks
  mountPath: /etc/salve/runbooks
  readOnly: true
{{- end }}
{{- if and (not $v.nats.credsFile) $v.nats.credsSecret.name }}
- name: nats-creds
  mountPath: /etc/salve/nats-creds
  readOnly: true
{{- end }}
{{- if and (not $v.nats.caFile) $v.nats.caSecret.name }}
- name: nats-ca
  mountPath: /etc/salve/nats-ca
  readOnly: true
{{- end }}
{{- if and $v.temporal.tls.enabled $v.temporal.tls.existingSecret }}
- name: temporal-tls
  mountPath: /etc/salve/temporal-tls
  readOnly: true
{{- end }}
{{- if $v.tls.enabled }}
- name: tls
  mountPath: /etc/salve/tls
  readOnly: true
{{- end }}
{{- if and $server (include "salve.hasRole" (dict "ctx" $ "role" "ingest")) }}
- name: webhook-token
  mountPath: /etc/salve/webhook-token
  readOnly: true
{{- end }}
{{- if and $server (include "salve.hasRole" (dict "ctx" $ "role" "api")) $v.auditDB.existingSecret }}
- name: audit-db
  mountPath: /etc/salve/audit-db
  readOnly: true
{{- end }}
{{- if and $server (include "salve.hasRole" (dict "ctx" $ "role" "api")) (not (include "salve.auditPostgres" $)) }}
- name: audit
  mountPath: /var/lib/salve-audit
{{- end }}
{{- if and (not $server) $v.vault.enabled }}
{{- if and (not $v.vault.caFile) $v.vault.caSecret.name }}
- name: vault-ca
  mountPath: /etc/salve/vault-ca
  readOnly: true
{{- end }}
{{- $ar := $v.vault.auth.approle }}
{{- if and (eq $v.vault.auth.method "approle") (not $ar.secretIDFile) $ar.secretIDSecret.name }}
- name: vault-approle
  mountPath: /etc/salve/vault-approle
  readOnly: true
{{- end }}
- name: clusters
  mountPath: /etc/salve/clusters
  readOnly: true
{{- if and $v.vault.targetClusters.inCluster (not $v.vault.targetClusters.existingConfigMap) }}
- name: kube-root-ca
  mountPath: /etc/salve/kube-root-ca
  readOnly: true
{{- end }}
{{- end }}
{{- with (index $v .component "extraVolumeMounts") }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
git-sync containers (an init container that syncs once, so Salve starts
with the runbooks, and a sidecar that keeps them current).
*/}}
{{- define "salve.gitSync" -}}
{{- $ := .ctx -}}
{{- $g := $.Values.runbooks.gitSync -}}
- name: {{ if .oneTime }}git-sync-init{{ else }}git-sync{{ end }}
  image: "{{ $g.image.repository }}:{{ $g.image.tag }}"
  imagePullPolicy: {{ $g.image.pullPolicy }}
  args:
    - --repo={{ $g.repo }}
    - --ref={{ $g.ref }}
    - --root=/etc/salve/git
    - --link=current
    - --period={{ $g.period }}
    {{- if .oneTime }}
    - --one-time
    {{- end }}
    {{- if $g.sshSecret.name }}
    - --ssh-key-file=/etc/git-secret/{{ $g.sshSecret.key }}
    - --ssh-known-hosts-file=/etc/git-secret/{{ $g.sshSecret.knownHostsKey }}
    {{- end }}
    {{- range $g.extraArgs }}
    - {{ . }}
    {{- end }}
  env:
    - name: HOME
      value: /tmp
    {{- with $g.credentialsSecret }}
    - name: GITSYNC_USERNAME
      valueFrom:
        secretKeyRef: {name: {{ . }}, key: username}
    - name: GITSYNC_PASSWORD
      valueFrom:
        secretKeyRef: {name: {{ . }}, key: password}
    {{- end }}
  securityContext:
    {{- toYaml $.Values.securityContext | nindent 4 }}
  resources:
    {{- toYaml $g.resources | nindent 4 }}
  volumeMounts:
    - name: runbooks
      mountPath: /etc/salve/git
    - name: tmp
      mountPath: /tmp
    {{- if $g.sshSecret.name }}
    - name: git-ssh
      mountPath: /etc/git-secret
      readOnly: true
    {{- end }}
{{- end }}

{{/* Probe scheme follows tls.enabled. */}}
{{- define "salve.probe" -}}
{{- $p := deepCopy .probe -}}
{{- if and .ctx.Values.tls.enabled $p.httpGet -}}
{{- $_ := set $p.httpGet "scheme" "HTTPS" -}}
{{- end -}}
{{- toYaml $p -}}
{{- end }}

{{/* Pod annotations, with the checksums that roll pods on config changes. */}}
{{- define "salve.podAnnotations" -}}
{{- $ := .ctx -}}
{{- if and $.Values.config.create (not $.Values.config.file) }}
checksum/config: {{ include (print $.Template.BasePath "/config-secret.yaml") $ | sha256sum }}
{{- end }}
{{- if and (eq .component "worker") $.Values.vault.enabled (not $.Values.vault.targetClusters.existingConfigMap) }}
checksum/clusters: {{ include (print $.Template.BasePath "/clusters-configmap.yaml") $ | sha256sum }}
{{- end }}
{{- if $.Values.vaultAgent.enabled }}
vault.hashicorp.com/agent-inject: "true"
vault.hashicorp.com/role: {{ $.Values.vaultAgent.role | quote }}
{{- with $.Values.vaultAgent.annotations }}
{{ toYaml . }}
{{- end }}
{{- end }}
{{- with (index $.Values .component "podAnnotations") }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Spread replicas over nodes and zones when the cluster allows it. */}}
{{- define "salve.defaultSpread" -}}
{{- range list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
- maxSkew: 1
  topologyKey: {{ . }}
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "salve.selectorLabels" $ | nindent 6 }}
  matchLabelKeys: [pod-template-hash]
{{- end }}
{{- end }}
