<#
.SYNOPSIS
  Runs one just-in-time GitHub Actions runner on Windows and exits when it does (docs/contracts.md).
.DESCRIPTION
  Run by SSM RunCommand (AWS-RunPowerShellScript) as SYSTEM:
    & 'C:\jitrunners\start-runner.ps1' -ParameterName <param-name> -IdleTimeoutSeconds <n>
  Reads the JIT config from the SSM SecureString and runs run.cmd as the local 'runner' account
  with the config in the environment (ACTIONS_RUNNER_INPUT_JITCONFIG), never on a command line or
  in output. The parameter is left to scale-down, which deletes a batch of ended runners'
  parameters in one call (DeleteParameters): the runner's role only reads Parameter Store. Exit: 3 parameter missing, 4 idle timeout, else the runner's code.
#>
[CmdletBinding()]
param(
  [Parameter(Mandatory = $true)][ValidatePattern('^/[A-Za-z0-9_./-]+$')][string]$ParameterName,
  [ValidateRange(1, 172800)][int]$IdleTimeoutSeconds = 300,
  [string]$RunnerDir = $(if ($env:RUNNER_DIR) { $env:RUNNER_DIR } else { 'C:\actions-runner' }),
  [int]$PollSeconds = 5
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

function Write-Log([string]$Message) {
  $stamp = (Get-Date).ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ')
  [Console]::Error.WriteLine("$stamp start-runner: $Message")
}

function Read-JitConfig([string]$Name) {
  $errFile = [IO.Path]::GetTempFileName()
  try {
    $value = & aws ssm get-parameter --name $Name --with-decryption --query Parameter.Value --output text 2> $errFile
    if ($LASTEXITCODE -ne 0) {
      $reason = (Get-Content -Raw $errFile)
      if ($reason -match 'ParameterNotFound') { Write-Log "parameter $Name does not exist" }
      else { Write-Log "cannot read parameter ${Name}: $($reason.Trim())" }
      return $null
    }
    return ($value | Out-String).Trim()
  } finally {
    Remove-Item -Force -ErrorAction SilentlyContinue $errFile
  }
}

$jit = Read-JitConfig $ParameterName
if ([string]::IsNullOrEmpty($jit) -or $jit -eq 'None') { exit 3 }

# The password of the local runner account is set by bootstrap.ps1 and kept in LSA secrets
# (readable by SYSTEM only); the JIT config rides in the child's environment block.
$startInfo = New-Object System.Diagnostics.ProcessStartInfo
$startInfo.FileName = Join-Path $RunnerDir 'run.cmd'
$startInfo.WorkingDirectory = $RunnerDir
$startInfo.UseShellExecute = $false
$startInfo.EnvironmentVariables['ACTIONS_RUNNER_INPUT_JITCONFIG'] = $jit
$credential = & 'C:\jitrunners\runner-credential.ps1'
$startInfo.UserName = $credential.UserName
$startInfo.Password = $credential.Password
$startInfo.LoadUserProfile = $true
$runner = [System.Diagnostics.Process]::Start($startInfo)
$jit = $null
$startInfo.EnvironmentVariables.Remove('ACTIONS_RUNNER_INPUT_JITCONFIG')
Write-Log "runner started (pid $($runner.Id), idle timeout ${IdleTimeoutSeconds}s)"

$watch = [Diagnostics.Stopwatch]::StartNew()
$assigned = $false
while (-not $runner.HasExited) {
  if (-not $assigned) {
    if (Get-ChildItem -Path (Join-Path $RunnerDir '_diag') -Filter 'Worker_*.log' -ErrorAction SilentlyContinue) {
      $assigned = $true
      Write-Log "job assigned after $([int]$watch.Elapsed.TotalSeconds)s"
    } elseif ($watch.Elapsed.TotalSeconds -ge $IdleTimeoutSeconds) {
      Write-Log "no job assigned within ${IdleTimeoutSeconds}s; stopping the runner"
      & taskkill.exe /PID $runner.Id /T /F | Out-Null
      exit 4
    }
  }
  Start-Sleep -Seconds $PollSeconds
}
$runner.WaitForExit()
Write-Log "runner exited with status $($runner.ExitCode)"
exit $runner.ExitCode
