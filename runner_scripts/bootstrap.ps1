<#
.SYNOPSIS
  Windows runner bootstrap (EC2Launch user data): local 'runner' account, the Actions runner at a
  pinned version with its SHA-256 checked (or baked into the AMI), start-runner.ps1. Idempotent.
#>
[CmdletBinding()]
param(
  [Parameter(Mandatory = $true)][ValidatePattern('^\d+\.\d+\.\d+$')][string]$RunnerVersion,
  [string]$RunnerSha256 = '',
  [ValidateSet('true', 'false')][string]$Preinstalled = 'false',
  # Base URL of the runner releases (a mirror for private subnets): <url>/v<version>/<zip>.
  [ValidatePattern('^https?://\S+[^/]$')][string]$DownloadUrl = 'https://github.com/actions/runner/releases/download',
  [string]$RunnerDir = 'C:\actions-runner',
  [string]$InstallDir = 'C:\jitrunners',
  [string]$LogDir = 'C:\jitrunners\logs'
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
New-Item -ItemType Directory -Force -Path $LogDir, $InstallDir | Out-Null
# C:\ lets every user create folders and files (and modify their own): inherited, that would let the
# runner account replace the scripts SYSTEM runs. The install directory gets its own ACL, no
# inheritance, SYSTEM and Administrators only (SIDs: names differ between languages); its
# subdirectories and files inherit it.
& icacls.exe $InstallDir /inheritance:r /grant:r '*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F' | Out-Null
if ($LASTEXITCODE -ne 0) { throw "icacls could not restrict $InstallDir" }

function Write-Log([string]$Message) {
  $line = "$((Get-Date).ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ')) bootstrap: $Message"
  Write-Output $line
  Add-Content -Path (Join-Path $LogDir 'bootstrap.log') -Value $line
}

if ([version]$RunnerVersion -lt [version]'2.329.0') { throw "runner $RunnerVersion is older than 2.329.0 (GitHub refuses it)" }

# Unprivileged local account; its random password is stored for SYSTEM only (DPAPI, machine scope).
$credentialScript = Join-Path $InstallDir 'runner-credential.ps1'
if (-not (Get-LocalUser -Name 'runner' -ErrorAction SilentlyContinue)) {
  Add-Type -AssemblyName System.Web
  $plain = [System.Web.Security.Membership]::GeneratePassword(32, 6)
  $secure = ConvertTo-SecureString $plain -AsPlainText -Force
  New-LocalUser -Name 'runner' -Password $secure -PasswordNeverExpires -AccountNeverExpires -Description 'jitrunners' | Out-Null
  Add-Type -AssemblyName System.Security
  $protected = [Security.Cryptography.ProtectedData]::Protect([Text.Encoding]::UTF8.GetBytes($plain), $null, 'LocalMachine')
  [IO.File]::WriteAllBytes((Join-Path $InstallDir 'runner.secret'), $protected)
  $plain = $null
  & icacls.exe (Join-Path $InstallDir 'runner.secret') /inheritance:r /grant:r 'SYSTEM:(R)' 'Administrators:(F)' | Out-Null
  Write-Log 'created local user runner'
}
Set-Content -Path $credentialScript -Value @'
Add-Type -AssemblyName System.Security
$bytes = [Security.Cryptography.ProtectedData]::Unprotect([IO.File]::ReadAllBytes('C:\jitrunners\runner.secret'), $null, 'LocalMachine')
New-Object System.Management.Automation.PSCredential('runner', (ConvertTo-SecureString ([Text.Encoding]::UTF8.GetString($bytes)) -AsPlainText -Force))
'@

if ($Preinstalled -eq 'true') {
  if (-not (Test-Path (Join-Path $RunnerDir 'run.cmd'))) { throw "Preinstalled but no $RunnerDir\run.cmd in the AMI" }
  Write-Log "using the runner baked into the AMI at $RunnerDir"
} elseif ((Test-Path (Join-Path $RunnerDir '.jitrunners-version')) -and ((Get-Content (Join-Path $RunnerDir '.jitrunners-version')) -eq $RunnerVersion)) {
  Write-Log "runner $RunnerVersion already installed"
} else {
  if ($RunnerSha256 -notmatch '^[0-9a-fA-F]{64}$') { throw "no SHA-256 for runner ${RunnerVersion}: refusing to install an unverified runner" }
  $zip = Join-Path $env:TEMP "actions-runner-win-x64-$RunnerVersion.zip"
  $url = "$DownloadUrl/v$RunnerVersion/actions-runner-win-x64-$RunnerVersion.zip"
  Write-Log "downloading $url"
  Invoke-WebRequest -UseBasicParsing -Uri $url -OutFile $zip
  $actual = (Get-FileHash -Algorithm SHA256 -Path $zip).Hash
  if ($actual -ne $RunnerSha256.ToUpperInvariant()) { throw "SHA-256 mismatch for $url" }
  Write-Log "checksum verified ($RunnerSha256)"
  if (Test-Path $RunnerDir) { Remove-Item -Recurse -Force $RunnerDir }
  Expand-Archive -Path $zip -DestinationPath $RunnerDir
  Remove-Item -Force $zip
  Set-Content -Path (Join-Path $RunnerDir '.jitrunners-version') -Value $RunnerVersion
  Write-Log "installed runner $RunnerVersion at $RunnerDir"
}
& icacls.exe $RunnerDir /grant 'runner:(OI)(CI)M' /T /Q | Out-Null
Copy-Item -Force -Path (Join-Path $InstallDir 'src\start-runner.ps1') -Destination (Join-Path $InstallDir 'start-runner.ps1')
Write-Log 'installed C:\jitrunners\start-runner.ps1'
Set-Service -Name AmazonSSMAgent -StartupType Automatic -ErrorAction SilentlyContinue
Start-Service -Name AmazonSSMAgent -ErrorAction SilentlyContinue
Write-Log 'done'
