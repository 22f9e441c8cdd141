"""Rollback hooks: the levers outrider pulls when an alert fires, and their safety rules.

Alert events (:mod:`service.alerting.events`) from the in-process alert rules or from
Alertmanager (received by :mod:`service.admin.alertmanager`) go to the
:class:`~service.hooks.dispatcher.HookDispatcher`, which runs the matching hooks under the
safety rules (one action per incident and hook, cooldown, max actions per window, dry run,
every action recorded and counted). Hooks: ``webhook``, ``kubernetes-deployment``,
``argo-rollouts``, ``kserve``, ``exec``, ``fallback``. Example ``hooks:`` section::

    hooks:
      hooks:
        - name: pager
          type: webhook
          url: https://hooks.example.com/outrider
          match: {severities: [critical, warning]}
          signing_secret: {env: OUTRIDER_PAGER_SIGNING_KEY}
        - name: undo-digits
          type: kubernetes-deployment
          namespace: models
          deployment: digits
          match: {alerts: [InputDrift, OodSpike], severities: [critical]}
          cooldown_seconds: 900
          max_actions: 1
          window_seconds: 86400
        - name: last-known-good
          type: fallback
          match: {severities: [critical]}
          switch_back_on_resolve: true
      inbound:
        token: {file: /var/run/secrets/outrider/admin-token}

The Kubernetes hooks need the RBAC in ``rbac.yaml`` beside this file.
"""
