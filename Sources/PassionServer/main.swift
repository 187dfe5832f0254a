import PassionServerCommand

await ServerCommand.runFromCommandLine()
